#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "models/layers/layer.hpp"
#include "models/layers/saved_map.hpp"
#include "models/layers/tp_group.hpp"
#include "models/layers/tp_range.hpp"

namespace troupe::models {

/// Multi-head causal self-attention on f32 [B, T, dim] (GPT-2 style):
///   qkv = x Wqkv^T + bqkv          ("<index>.<prefix>qkv.weight" [3*dim, dim], .bias [3*dim])
///   per head h: o_h = softmax(q_h k_h^T / sqrt(head_dim), causal) v_h
///   y = o Wproj^T + bproj          ("<index>.<prefix>proj.weight" [dim, dim], .bias [dim])
/// The qkv rows are [q | k | v], each split into `heads` contiguous groups of
/// head_dim = dim / heads features (torch.nn.Linear layout, like GPT-2's
/// c_attn), and o concatenates the heads in the same order.
///
/// Tensor parallelism (Megatron): a rank of a tp_group owns a contiguous range
/// of whole heads, i.e. their q, k and v rows of qkv (a column-parallel
/// tp_dense) and their columns of proj (row-parallel; proj.bias replicated),
/// and runs the heads' attention locally. Forward all-reduces once (after
/// proj), backward once (the input gradient after qkv); input and output stay
/// replicated, so the layer fits anywhere in a chain.
///
/// The two projections are dense sub-layers (`dense`, or `tp_dense` when
/// split; their saved inputs included); this layer owns their parameters and
/// lends them per call (parameter_loan). It saves qkv [B, T, 3 * local dim]
/// and the attention probabilities [B, local heads, T, T] per micro-batch.
/// Position t attends to positions <= t only, so outputs at t never depend on
/// later inputs.
class causal_self_attention final : public layer {
public:
  /// `prefix` goes between the index and the parameter leaf ("attn." inside a
  /// transformer_block gives "3.attn.qkv.weight").
  causal_self_attention(std::size_t index, std::int64_t dim, std::int64_t heads,
                        const std::string& prefix = "");
  /// Tensor-parallel rank group->rank() of group->size(): owns the heads
  /// tp_split_units(heads, size, rank) gives it. Throws std::invalid_argument
  /// naming the layer when a rank would get no head.
  causal_self_attention(std::size_t index, std::int64_t dim, std::int64_t heads,
                        const std::string& prefix, std::shared_ptr<tp_group> group);
  causal_self_attention(const causal_self_attention&) = delete;
  causal_self_attention& operator=(const causal_self_attention&) = delete;

  std::string kind() const override { return "causal_self_attention"; }
  nlohmann::json spec() const override;
  /// Per-sample [T, dim].
  shape_t output_shape(const shape_t& input) const override;
  tensor forward(const tensor& x, const forward_context& ctx) override;
  tensor backward(const tensor& dy, micro_batch_id mb, bool need_input_grad) override;
  std::span<parameter> parameters() override { return params_; }
  /// Both projections as torch.nn.Linear: U(-1/sqrt(dim), 1/sqrt(dim)) (a
  /// tensor-parallel rank keeps its slice of the unsplit values).
  void init(std::uint64_t seed) override;
  std::size_t saved_bytes() const override;
  double forward_flops(const shape_t& input) const override;
  void clear_saved() override;

  std::size_t index() const noexcept { return index_; }
  std::int64_t dim() const noexcept { return dim_; }
  std::int64_t heads() const noexcept { return heads_; }
  std::int64_t head_dim() const noexcept { return head_dim_; }
  /// The heads this layer computes: all of them unless tensor-parallel.
  const tp_range& local_heads() const noexcept { return local_heads_; }

private:
  std::span<parameter> qkv_params() { return std::span<parameter>(params_).subspan(0, 2); }
  std::span<parameter> proj_params() { return std::span<parameter>(params_).subspan(2, 2); }

  std::size_t index_;
  std::string who_;
  std::int64_t dim_, heads_, head_dim_;
  tp_range local_heads_;
  std::unique_ptr<layer> qkv_, proj_; // dense, or tp_dense column / row
  std::array<parameter, 4> params_;   // qkv.weight, qkv.bias, proj.weight, proj.bias
  struct saved {
    tensor qkv, probs;
  };
  saved_map<saved> saved_;
};

} // namespace troupe::models
