#pragma once

#include <cstdint>

namespace troupe::kernels::cpu {

/// Geometry of a 2-D convolution or pooling window over NCHW input.
struct conv_geometry {
  std::int64_t channels = 1, height = 0, width = 0; ///< input C, H, W
  std::int64_t kernel_h = 1, kernel_w = 1;
  std::int64_t stride_h = 1, stride_w = 1;
  std::int64_t pad_h = 0, pad_w = 0;
  constexpr std::int64_t out_h() const { return (height + 2 * pad_h - kernel_h) / stride_h + 1; }
  constexpr std::int64_t out_w() const { return (width + 2 * pad_w - kernel_w) / stride_w + 1; }
};

/// im2col for one image: x [C, H, W] -> col [C*kh*kw, out_h*out_w] (zero padding).
void im2col(const float* x, const conv_geometry& g, float* col);
/// Adjoint of im2col: dx [C, H, W] (+)= col2im(dcol); accumulate=false overwrites dx.
void col2im(const float* col, const conv_geometry& g, float* dx, bool accumulate);

/// Conv2D forward over a batch: x [N, C, H, W], w [F, C, kh, kw], b [F] (may be
/// null) -> y [N, F, out_h, out_w]. `col` is scratch of C*kh*kw*out_h*out_w floats.
void conv2d_forward(const float* x, const float* w, const float* b, std::int64_t batch,
                    std::int64_t filters, const conv_geometry& g, float* y, float* col);
/// Conv2D backward. dw, db accumulate when accumulate is true (micro-batches;
/// the call's sums are added whole, see add_inplace), otherwise overwrite. dx may be null
/// (first layer). Needs the same scratch.
void conv2d_backward(const float* x, const float* w, const float* dy, std::int64_t batch,
                     std::int64_t filters, const conv_geometry& g, float* dx, float* dw, float* db,
                     bool accumulate, float* col);

/// MaxPool2D forward (NCHW, geometry channels = C); records the argmax index
/// (into each H*W plane) per output for backward.
void maxpool2d_forward(const float* x, std::int64_t batch, const conv_geometry& g, float* y,
                       std::int32_t* argmax);
/// dx = 0 then scatter dy into the argmax positions.
void maxpool2d_backward(const float* dy, const std::int32_t* argmax, std::int64_t batch,
                        const conv_geometry& g, float* dx);

} // namespace troupe::kernels::cpu
