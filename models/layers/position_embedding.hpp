#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

#include "models/layers/layer.hpp"
#include "models/layers/saved_map.hpp"

namespace troupe::models {

/// Learned absolute positions: adds row t of a [context, dim] table
/// ("<index>.weight", N(0, 1) like torch.nn.Embedding, weight decay as the
/// token embedding) to position t of an f32 [B, T, dim] input, T <= context.
///
/// A separate layer after `embedding` (rather than a fused token+position
/// embedding) so that `embedding` stays the only layer taking i32 ids, and a
/// spec can use positions with any first layer. dL/dx is dL/dy itself (shared,
/// not copied); only the input shape is saved.
class position_embedding final : public layer {
public:
  position_embedding(std::size_t index, std::int64_t context, std::int64_t dim);

  std::string kind() const override { return "position_embedding"; }
  nlohmann::json spec() const override;
  /// Per-sample [T, dim] with 1 <= T <= context.
  shape_t output_shape(const shape_t& input) const override;
  tensor forward(const tensor& x, const forward_context& ctx) override;
  tensor backward(const tensor& dy, micro_batch_id mb, bool need_input_grad) override;
  std::span<parameter> parameters() override { return params_; }
  void init(std::uint64_t seed) override;
  /// 0: only shapes are saved.
  std::size_t saved_bytes() const override { return 0; }
  double forward_flops(const shape_t& input) const override;
  void clear_saved() override { saved_.clear(); }

  std::size_t index() const noexcept { return index_; }
  std::int64_t context() const noexcept { return context_; }
  std::int64_t dim() const noexcept { return dim_; }

private:
  std::size_t index_;
  std::string who_;
  std::int64_t context_, dim_;
  std::array<parameter, 1> params_;
  saved_map<shape_t> saved_; // the input shape
};

} // namespace troupe::models
