#pragma once

#include <cstddef>
#include <cstdint>

#include "models/layers/layer.hpp"
#include "models/layers/saved_map.hpp"

namespace troupe::models {

/// Inverted dropout: in training each element is zeroed with probability p and
/// the rest scaled by 1/(1-p); identity in evaluation.
///
/// The mask of element (sample s, j) comes from the counter-based stream keyed
/// by (ctx.seed, this layer's index, ctx.step) at position s * cols + j with
/// s = ctx.sample_offset + row, so it is the same however the global batch is
/// split into micro-batches, replicas or stages. Saves the u8 mask.
class dropout final : public layer {
public:
  /// p in [0, 1).
  dropout(std::size_t index, double p);

  std::string kind() const override { return "dropout"; }
  nlohmann::json spec() const override { return {{"type", "dropout"}, {"p", p_}}; }
  shape_t output_shape(const shape_t& input) const override { return input; }
  tensor forward(const tensor& x, const forward_context& ctx) override;
  tensor backward(const tensor& dy, micro_batch_id mb, bool need_input_grad) override;
  std::size_t saved_bytes() const override;
  double forward_flops(const shape_t& input) const override;
  void clear_saved() override { saved_.clear(); }

  std::size_t index() const noexcept { return index_; }
  double p() const noexcept { return p_; }
  /// The stream key of this layer's mask at `step` (exposed for tests and
  /// for devices that regenerate the mask instead of storing it).
  std::uint64_t mask_key(std::int64_t step) const noexcept;

private:
  std::size_t index_;
  std::string who_;
  double p_;
  /// Per micro-batch: the mask (undefined when p == 0: backward passes dy
  /// through) and the output shape, to check dy against.
  struct saved {
    tensor mask;
    shape_t shape;
  };
  saved_map<saved> saved_;
};

} // namespace troupe::models
