#include "kernels/cpu/conv.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <vector>

#include "kernels/cpu/elementwise.hpp"
#include "kernels/cpu/gemm.hpp"

namespace troupe::kernels::cpu {
namespace {

// Range [lo, hi) of output columns whose input column ow*stride - pad + j lies
// inside [0, width): the loops below run branch-free over that range and
// zero-fill (or skip) the padded rest.
struct span_range {
  std::int64_t lo, hi;
};
span_range valid_outputs(std::int64_t offset, std::int64_t stride, std::int64_t extent,
                         std::int64_t out) {
  // need 0 <= o*stride + offset < extent
  std::int64_t lo = offset >= 0 ? 0 : (-offset + stride - 1) / stride;
  std::int64_t hi = extent - offset <= 0 ? 0 : (extent - offset + stride - 1) / stride;
  lo = std::min(lo, out);
  hi = std::clamp(hi, lo, out);
  return {lo, hi};
}

void check_geometry(const conv_geometry& g) {
  if (g.kernel_h < 1 || g.kernel_w < 1 || g.stride_h < 1 || g.stride_w < 1 || g.pad_h < 0 ||
      g.pad_w < 0 || g.out_h() < 1 || g.out_w() < 1)
    throw std::invalid_argument("conv: invalid geometry");
}

// A 1x1, stride-1, unpadded convolution's im2col is the identity: use x as is.
bool im2col_is_identity(const conv_geometry& g) {
  return g.kernel_h == 1 && g.kernel_w == 1 && g.stride_h == 1 && g.stride_w == 1 && g.pad_h == 0 &&
         g.pad_w == 0;
}

} // namespace

void im2col(const float* x, const conv_geometry& g, float* col) {
  const std::int64_t oh_n = g.out_h(), ow_n = g.out_w(), plane = oh_n * ow_n;
  for (std::int64_t c = 0; c < g.channels; ++c) {
    const float* xc = x + c * g.height * g.width;
    for (std::int64_t i = 0; i < g.kernel_h; ++i)
      for (std::int64_t j = 0; j < g.kernel_w; ++j) {
        float* row = col + ((c * g.kernel_h + i) * g.kernel_w + j) * plane;
        const span_range w = valid_outputs(j - g.pad_w, g.stride_w, g.width, ow_n);
        for (std::int64_t oh = 0; oh < oh_n; ++oh) {
          float* __restrict out = row + oh * ow_n;
          const std::int64_t ih = oh * g.stride_h - g.pad_h + i;
          if (ih < 0 || ih >= g.height) {
            std::fill(out, out + ow_n, 0.f);
            continue;
          }
          const float* __restrict in = xc + ih * g.width;
          const std::int64_t off = j - g.pad_w;
          std::fill(out, out + w.lo, 0.f);
          if (g.stride_w == 1)
            for (std::int64_t ow = w.lo; ow < w.hi; ++ow)
              out[ow] = in[ow + off];
          else
            for (std::int64_t ow = w.lo; ow < w.hi; ++ow)
              out[ow] = in[ow * g.stride_w + off];
          std::fill(out + w.hi, out + ow_n, 0.f);
        }
      }
  }
}

void col2im(const float* col, const conv_geometry& g, float* dx, bool accumulate) {
  const std::int64_t oh_n = g.out_h(), ow_n = g.out_w(), plane = oh_n * ow_n;
  if (!accumulate)
    std::fill(dx, dx + g.channels * g.height * g.width, 0.f);
  for (std::int64_t c = 0; c < g.channels; ++c) {
    float* xc = dx + c * g.height * g.width;
    for (std::int64_t i = 0; i < g.kernel_h; ++i)
      for (std::int64_t j = 0; j < g.kernel_w; ++j) {
        const float* row = col + ((c * g.kernel_h + i) * g.kernel_w + j) * plane;
        const span_range w = valid_outputs(j - g.pad_w, g.stride_w, g.width, ow_n);
        for (std::int64_t oh = 0; oh < oh_n; ++oh) {
          const std::int64_t ih = oh * g.stride_h - g.pad_h + i;
          if (ih < 0 || ih >= g.height)
            continue;
          const float* __restrict in = row + oh * ow_n;
          float* __restrict out = xc + ih * g.width;
          const std::int64_t off = j - g.pad_w;
          if (g.stride_w == 1)
            for (std::int64_t ow = w.lo; ow < w.hi; ++ow)
              out[ow + off] += in[ow];
          else
            for (std::int64_t ow = w.lo; ow < w.hi; ++ow)
              out[ow * g.stride_w + off] += in[ow];
        }
      }
  }
}

void conv2d_forward(const float* x, const float* w, const float* b, std::int64_t batch,
                    std::int64_t filters, const conv_geometry& g, float* y, float* col) {
  check_geometry(g);
  const std::int64_t ckk = g.channels * g.kernel_h * g.kernel_w;
  const std::int64_t plane = g.out_h() * g.out_w();
  const std::int64_t in_size = g.channels * g.height * g.width;
  const bool identity = im2col_is_identity(g);
  for (std::int64_t n = 0; n < batch; ++n) {
    const float* cn = x + n * in_size;
    if (!identity) {
      im2col(cn, g, col);
      cn = col;
    }
    float* yn = y + n * filters * plane;
    // y_n [F, OHW] = W [F, CKK] * col [CKK, OHW]; the bias is written first and
    // accumulated by the GEMM (beta = 1) to avoid a second pass over y.
    if (b != nullptr)
      for (std::int64_t f = 0; f < filters; ++f)
        std::fill(yn + f * plane, yn + (f + 1) * plane, b[f]);
    gemm(trans::no, trans::no, filters, plane, ckk, 1.f, w, ckk, cn, plane,
         b != nullptr ? 1.f : 0.f, yn, plane);
  }
}

void conv2d_backward(const float* x, const float* w, const float* dy, std::int64_t batch,
                     std::int64_t filters, const conv_geometry& g, float* dx, float* dw, float* db,
                     bool accumulate, float* col) {
  check_geometry(g);
  const std::int64_t ckk = g.channels * g.kernel_h * g.kernel_w;
  const std::int64_t plane = g.out_h() * g.out_w();
  const std::int64_t in_size = g.channels * g.height * g.width;
  const bool identity = im2col_is_identity(g);
  // The call's dw and db are summed over its samples whole, then added to
  // the micro-batches' running sums (add_inplace).
  std::vector<float> sums(static_cast<std::size_t>(accumulate ? filters * ckk + filters : 0));
  float* const final_dw = dw;
  float* const final_db = db;
  if (accumulate) {
    dw = dw != nullptr ? sums.data() : nullptr;
    db = db != nullptr ? sums.data() + filters * ckk : nullptr;
  }
  if (dw != nullptr)
    std::fill(dw, dw + filters * ckk, 0.f);
  if (db != nullptr)
    std::fill(db, db + filters, 0.f);
  for (std::int64_t n = 0; n < batch; ++n) {
    const float* dyn = dy + n * filters * plane;
    if (dw != nullptr) {
      const float* cn = x + n * in_size;
      if (!identity) {
        im2col(cn, g, col);
        cn = col;
      }
      // dW [F, CKK] += dy_n [F, OHW] * col^T [OHW, CKK]
      gemm(trans::no, trans::yes, filters, ckk, plane, 1.f, dyn, plane, cn, plane, 1.f, dw, ckk);
    }
    if (db != nullptr)
      for (std::int64_t f = 0; f < filters; ++f) {
        const float* __restrict d = dyn + f * plane;
        float s = 0.f;
        for (std::int64_t p = 0; p < plane; ++p)
          s += d[p];
        db[f] += s;
      }
    if (dx != nullptr) {
      float* dxn = dx + n * in_size;
      if (identity) {
        // dx_n [C, HW] = W^T [C, F] * dy_n [F, HW]
        gemm(trans::yes, trans::no, ckk, plane, filters, 1.f, w, ckk, dyn, plane, 0.f, dxn, plane);
      } else {
        // dcol [CKK, OHW] = W^T [CKK, F] * dy_n [F, OHW], reusing the scratch.
        gemm(trans::yes, trans::no, ckk, plane, filters, 1.f, w, ckk, dyn, plane, 0.f, col, plane);
        col2im(col, g, dxn, false);
      }
    }
  }
  if (accumulate) {
    if (final_dw != nullptr)
      add_inplace(final_dw, dw, filters * ckk);
    if (final_db != nullptr)
      add_inplace(final_db, db, filters);
  }
}

void maxpool2d_forward(const float* x, std::int64_t batch, const conv_geometry& g, float* y,
                       std::int32_t* argmax) {
  check_geometry(g);
  if (g.height * g.width > std::numeric_limits<std::int32_t>::max())
    throw std::invalid_argument("maxpool2d: plane too large for int32 argmax");
  const std::int64_t oh_n = g.out_h(), ow_n = g.out_w(), in_plane = g.height * g.width;
  for (std::int64_t nc = 0; nc < batch * g.channels; ++nc) {
    const float* xp = x + nc * in_plane;
    float* yp = y + nc * oh_n * ow_n;
    std::int32_t* ap = argmax + nc * oh_n * ow_n;
    for (std::int64_t oh = 0; oh < oh_n; ++oh) {
      const std::int64_t h0 = std::max<std::int64_t>(oh * g.stride_h - g.pad_h, 0);
      const std::int64_t h1 = std::min(oh * g.stride_h - g.pad_h + g.kernel_h, g.height);
      for (std::int64_t ow = 0; ow < ow_n; ++ow) {
        const std::int64_t w0 = std::max<std::int64_t>(ow * g.stride_w - g.pad_w, 0);
        const std::int64_t w1 = std::min(ow * g.stride_w - g.pad_w + g.kernel_w, g.width);
        // Padding acts as -inf (PyTorch); first maximum wins, NaN propagates.
        float best = -std::numeric_limits<float>::infinity();
        std::int64_t best_i = -1;
        for (std::int64_t h = h0; h < h1; ++h)
          for (std::int64_t wi = w0; wi < w1; ++wi) {
            const float v = xp[h * g.width + wi];
            if (best_i < 0 || v > best || (std::isnan(v) && !std::isnan(best))) {
              best = v;
              best_i = h * g.width + wi;
            }
          }
        yp[oh * ow_n + ow] = best_i < 0 ? 0.f : best;
        ap[oh * ow_n + ow] = static_cast<std::int32_t>(best_i);
      }
    }
  }
}

void maxpool2d_backward(const float* dy, const std::int32_t* argmax, std::int64_t batch,
                        const conv_geometry& g, float* dx) {
  const std::int64_t out_plane = g.out_h() * g.out_w(), in_plane = g.height * g.width;
  std::fill(dx, dx + batch * g.channels * in_plane, 0.f);
  for (std::int64_t nc = 0; nc < batch * g.channels; ++nc) {
    const float* d = dy + nc * out_plane;
    const std::int32_t* a = argmax + nc * out_plane;
    float* xp = dx + nc * in_plane;
    for (std::int64_t o = 0; o < out_plane; ++o)
      if (a[o] >= 0)
        xp[a[o]] += d[o];
  }
}

} // namespace troupe::kernels::cpu
