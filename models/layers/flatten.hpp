#pragma once

#include <cstddef>
#include <cstdint>

#include "models/layers/layer.hpp"
#include "models/layers/saved_map.hpp"

namespace troupe::models {

/// Flattens every dimension after the batch: [N, d1, d2, ...] -> [N, d1*d2*...].
/// A reshape sharing the storage (no copy); backward reshapes dy back, so it
/// only remembers the input shape per micro-batch.
class flatten final : public layer {
public:
  explicit flatten(std::size_t index);

  std::string kind() const override { return "flatten"; }
  nlohmann::json spec() const override { return {{"type", "flatten"}}; }
  shape_t output_shape(const shape_t& input) const override;
  tensor forward(const tensor& x, const forward_context& ctx) override;
  tensor backward(const tensor& dy, micro_batch_id mb, bool need_input_grad) override;
  /// Only shapes are kept (no tensor data): reports 0.
  std::size_t saved_bytes() const override { return 0; }
  double forward_flops(const shape_t&) const override { return 0.0; }
  void clear_saved() override { saved_.clear(); }

  std::size_t index() const noexcept { return index_; }

private:
  std::size_t index_;
  std::string who_;
  saved_map<shape_t> saved_; // the input shape
};

} // namespace troupe::models
