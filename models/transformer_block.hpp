#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

#include "models/causal_self_attention.hpp"
#include "models/dense.hpp"
#include "models/gelu.hpp"
#include "models/layer.hpp"
#include "models/layer_norm.hpp"

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
/// Head and hidden sizes stay explicit so a tensor-parallel variant can split
/// heads (attn) and hidden units (fc1 columns, fc2 rows) across shards.
class transformer_block final : public layer {
public:
  transformer_block(std::size_t index, std::int64_t dim, std::int64_t heads, std::int64_t hidden);
  transformer_block(const transformer_block&) = delete;
  transformer_block& operator=(const transformer_block&) = delete;

  std::string kind() const override { return "transformer_block"; }
  nlohmann::json spec() const override;
  /// Per-sample [T, dim].
  shape_t output_shape(const shape_t& input) const override;
  tensor forward(const tensor& x, const forward_context& ctx) override;
  tensor backward(const tensor& dy, micro_batch_id mb, bool need_input_grad) override;
  std::span<parameter> parameters() override { return params_; }
  /// Each sub-layer's own (PyTorch default) init, keyed by the global names.
  void init(std::uint64_t seed) override;
  std::size_t saved_bytes() const override;
  double forward_flops(const shape_t& input) const override;
  void clear_saved() override;

  std::size_t index() const noexcept { return index_; }
  std::int64_t dim() const noexcept { return dim_; }
  std::int64_t heads() const noexcept { return heads_; }
  std::int64_t hidden() const noexcept { return hidden_; }

private:
  std::span<parameter> slice(std::size_t begin, std::size_t n) {
    return std::span<parameter>(params_).subspan(begin, n);
  }

  std::size_t index_;
  std::string who_;
  std::int64_t dim_, heads_, hidden_;
  layer_norm ln1_;
  causal_self_attention attn_;
  layer_norm ln2_;
  dense fc1_;
  gelu act_;
  dense fc2_;
  std::array<parameter, 12> params_;
};

} // namespace troupe::models
