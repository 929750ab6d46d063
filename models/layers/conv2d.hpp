#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/cpu/conv.hpp"
#include "models/layers/layer.hpp"
#include "models/layers/saved_map.hpp"

namespace troupe::models {

/// 2-D convolution over NCHW input, torch.nn.Conv2d layout: weight
/// [F, C, k, k], bias [F], square kernel, same stride and zero padding on both
/// axes. im2col + GEMM; saves its input (shared) for backward and keeps one
/// im2col scratch buffer that forward and backward reuse.
class conv2d final : public layer {
public:
  conv2d(std::size_t index, std::int64_t in_channels, std::int64_t out_channels,
         std::int64_t kernel, std::int64_t stride = 1, std::int64_t padding = 0);

  std::string kind() const override { return "conv2d"; }
  nlohmann::json spec() const override;
  /// [C, H, W] -> [F, out_h, out_w].
  shape_t output_shape(const shape_t& input) const override;
  tensor forward(const tensor& x, const forward_context& ctx) override;
  tensor backward(const tensor& dy, micro_batch_id mb, bool need_input_grad) override;
  std::span<parameter> parameters() override { return params_; }
  /// PyTorch's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = C*k*k.
  void init(std::uint64_t seed) override;
  std::size_t saved_bytes() const override;
  double forward_flops(const shape_t& input) const override;
  void clear_saved() override { saved_.clear(); }

  std::size_t index() const noexcept { return index_; }

private:
  /// Geometry for a batched input, validating C, H, W against the layer.
  kernels::cpu::conv_geometry geometry(const shape_t& per_sample) const;
  float* scratch(const kernels::cpu::conv_geometry& g);

  std::size_t index_;
  std::string who_;
  std::int64_t in_channels_, out_channels_, kernel_, stride_, padding_;
  std::array<parameter, 2> params_; // weight, bias
  saved_map<tensor> saved_;         // the input
  std::vector<float> col_;          // im2col scratch, grown on demand
};

} // namespace troupe::models
