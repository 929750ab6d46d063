#pragma once

#include <cstddef>
#include <cstdint>

#include "models/layers/layer.hpp"
#include "models/layers/saved_map.hpp"

namespace troupe::models {

/// Exact GELU, x * Phi(x) (PyTorch's default approximate='none'). Saves its
/// input: the derivative needs x, not y.
class gelu final : public layer {
public:
  explicit gelu(std::size_t index);

  std::string kind() const override { return "gelu"; }
  nlohmann::json spec() const override { return {{"type", "gelu"}}; }
  shape_t output_shape(const shape_t& input) const override { return input; }
  tensor forward(const tensor& x, const forward_context& ctx) override;
  tensor backward(const tensor& dy, micro_batch_id mb, bool need_input_grad) override;
  std::size_t saved_bytes() const override;
  double forward_flops(const shape_t& input) const override;
  void clear_saved() override { saved_.clear(); }

  std::size_t index() const noexcept { return index_; }

private:
  std::size_t index_;
  std::string who_;
  saved_map<tensor> saved_; // the input
};

} // namespace troupe::models
