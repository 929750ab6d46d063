#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/cpu/conv.hpp"
#include "models/layers/layer.hpp"
#include "models/layers/saved_map.hpp"

namespace troupe::models {

/// 2-D max pooling over NCHW input (square window, no padding, floor mode,
/// like torch.nn.MaxPool2d's defaults). Saves the i32 argmax of every output
/// (smaller than the input) rather than the input itself.
class maxpool2d final : public layer {
public:
  /// stride 0 means stride = kernel (PyTorch's default).
  maxpool2d(std::size_t index, std::int64_t kernel, std::int64_t stride = 0);

  std::string kind() const override { return "maxpool2d"; }
  nlohmann::json spec() const override;
  /// [C, H, W] -> [C, out_h, out_w].
  shape_t output_shape(const shape_t& input) const override;
  tensor forward(const tensor& x, const forward_context& ctx) override;
  tensor backward(const tensor& dy, micro_batch_id mb, bool need_input_grad) override;
  std::size_t saved_bytes() const override;
  double forward_flops(const shape_t& input) const override;
  void clear_saved() override { saved_.clear(); }

  std::size_t index() const noexcept { return index_; }

private:
  kernels::cpu::conv_geometry geometry(const shape_t& per_sample) const;

  std::size_t index_;
  std::string who_;
  std::int64_t kernel_, stride_;
  struct saved {
    tensor argmax;
    shape_t input_shape;
  };
  saved_map<saved> saved_;
};

} // namespace troupe::models
