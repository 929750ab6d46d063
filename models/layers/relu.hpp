#pragma once

#include <cstddef>
#include <cstdint>

#include "models/layers/layer.hpp"
#include "models/layers/saved_map.hpp"

namespace troupe::models {

/// Elementwise max(x, 0). Saves its output (y > 0 iff x > 0), which the next
/// layer usually holds anyway, so backward needs no extra memory.
class relu final : public layer {
public:
  explicit relu(std::size_t index);

  std::string kind() const override { return "relu"; }
  nlohmann::json spec() const override { return {{"type", "relu"}}; }
  shape_t output_shape(const shape_t& input) const override { return input; }
  tensor forward(const tensor& x, const forward_context& ctx) override;
  /// What forward would have saved, for a forward fused into the previous
  /// layer (dense::forward_relu) that produced this layer's output `y`.
  void keep_output(const tensor& y, const forward_context& ctx);
  tensor backward(const tensor& dy, micro_batch_id mb, bool need_input_grad) override;
  std::size_t saved_bytes() const override;
  double forward_flops(const shape_t& input) const override;
  void clear_saved() override { saved_.clear(); }

  std::size_t index() const noexcept { return index_; }

private:
  std::size_t index_;
  std::string who_;
  saved_map<tensor> saved_; // the output
};

} // namespace troupe::models
