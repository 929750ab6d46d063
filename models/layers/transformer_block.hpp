#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "models/layers/causal_self_attention.hpp"
#include "models/layers/gelu.hpp"
#include "models/layers/layer.hpp"
#include "models/layers/layer_norm.hpp"
#include "models/layers/tp_group.hpp"
#include "models/layers/tp_range.hpp"

namespace troupe::models {

/// Pre-LayerNorm decoder block (GPT-2) on f32 [B, T, dim]:
///   h = x + attn(ln1(x));   y = h + fc2(gelu(fc1(ln2(h))))
/// with attn a causal_self_attention {dim, heads} and fc1 dim -> hidden,
/// fc2 hidden -> dim.
///
/// One layer made of real sub-layers (layer_norm, causal_self_attention,
/// dense, gelu) rather than separate registry layers plus a residual side
/// channel: a model stays a plain chain of layers, each with one input and one
/// output per micro-batch, so sequential, pipeline stages and the partitioner
/// need no notion of skip connections (a stage boundary falls between blocks).
/// The sub-layers keep their own saved activations per micro-batch; the
/// residual adds need nothing saved. The block owns all 12 parameters in one
/// array (layer::parameters() is a span) and lends each sub-layer its slice
/// per call (parameter_loan). Names, in this order:
///   <index>.ln1.weight, .ln1.bias, .attn.qkv.weight, .attn.qkv.bias,
///   .attn.proj.weight, .attn.proj.bias, .ln2.weight, .ln2.bias,
///   .mlp.fc1.weight, .mlp.fc1.bias, .mlp.fc2.weight, .mlp.fc2.bias
///
/// Tensor parallelism (Megatron): a rank of a tp_group owns a range of heads
/// (see causal_self_attention) and a range of hidden units: fc1's rows and
/// bias entries (column-parallel) and fc2's columns (row-parallel; fc2.bias
/// replicated). The layer norms, residual adds and block input and output
/// stay replicated. Forward all-reduces twice (after attn.proj and after
/// fc2), backward twice (the input gradients of fc1 and attn.qkv).
class transformer_block final : public layer {
public:
  transformer_block(std::size_t index, std::int64_t dim, std::int64_t heads, std::int64_t hidden);
  /// Tensor-parallel rank group->rank() of group->size(): owns the heads and
  /// hidden units tp_split_units() gives it. Throws std::invalid_argument
  /// naming the layer when a rank would get no head or no hidden unit.
  transformer_block(std::size_t index, std::int64_t dim, std::int64_t heads, std::int64_t hidden,
                    std::shared_ptr<tp_group> group);
  transformer_block(const transformer_block&) = delete;
  transformer_block& operator=(const transformer_block&) = delete;

  std::string kind() const override { return "transformer_block"; }
  nlohmann::json spec() const override;
  /// Per-sample [T, dim].
  shape_t output_shape(const shape_t& input) const override;
  tensor forward(const tensor& x, const forward_context& ctx) override;
  tensor backward(const tensor& dy, micro_batch_id mb, bool need_input_grad) override;
  std::span<parameter> parameters() override { return params_; }
  /// Each sub-layer's own (PyTorch default) init, keyed by the global names
  /// (a tensor-parallel rank keeps its slice of the unsplit values).
  void init(std::uint64_t seed) override;
  std::size_t saved_bytes() const override;
  double forward_flops(const shape_t& input) const override;
  void clear_saved() override;

  std::size_t index() const noexcept { return index_; }
  std::int64_t dim() const noexcept { return dim_; }
  std::int64_t heads() const noexcept { return heads_; }
  std::int64_t hidden() const noexcept { return hidden_; }
  /// The hidden units this layer computes: all of them unless tensor-parallel.
  const tp_range& local_hidden() const noexcept { return local_hidden_; }

private:
  std::span<parameter> slice(std::size_t begin, std::size_t n) {
    return std::span<parameter>(params_).subspan(begin, n);
  }
  /// Moves the sub-layers' parameters into params_ under the block's names.
  void adopt_sub_layers();

  std::size_t index_;
  std::string who_;
  std::int64_t dim_, heads_, hidden_;
  tp_range local_hidden_;
  layer_norm ln1_;
  causal_self_attention attn_;
  layer_norm ln2_;
  std::unique_ptr<layer> fc1_; // dense, or tp_dense column
  gelu act_;
  std::unique_ptr<layer> fc2_; // dense, or tp_dense row
  std::array<parameter, 12> params_;
};

} // namespace troupe::models
