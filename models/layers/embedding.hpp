#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

#include "models/layers/layer.hpp"
#include "models/layers/saved_map.hpp"

namespace troupe::models {

/// Lookup table, torch.nn.Embedding: weight [vocab, dim] ("<index>.weight",
/// N(0, 1) init). Takes i32 ids of any shape [N, ...] and returns f32
/// [N, ..., dim]. Saves the ids (shared). Returns no input gradient (ids are
/// not differentiable), so it is meant to be a model's first layer.
class embedding final : public layer {
public:
  embedding(std::size_t index, std::int64_t vocab, std::int64_t dim);

  std::string kind() const override { return "embedding"; }
  nlohmann::json spec() const override;
  shape_t output_shape(const shape_t& input) const override;
  tensor forward(const tensor& ids, const forward_context& ctx) override;
  /// Always returns an undefined tensor.
  tensor backward(const tensor& dy, micro_batch_id mb, bool need_input_grad) override;
  std::span<parameter> parameters() override { return params_; }
  void init(std::uint64_t seed) override;
  std::size_t saved_bytes() const override;
  double forward_flops(const shape_t& input) const override;
  void clear_saved() override { saved_.clear(); }

  std::size_t index() const noexcept { return index_; }

private:
  std::size_t index_;
  std::string who_;
  std::int64_t vocab_, dim_;
  std::array<parameter, 1> params_;
  saved_map<tensor> saved_; // the ids
};

} // namespace troupe::models
