#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <utility>

#include "models/layers/layer.hpp"
#include "models/layers/saved_map.hpp"

namespace troupe::models {

/// Fully connected layer, torch.nn.Linear layout: weight [out, in], bias [out],
/// y = x W^T + b over the last dimension. Saves its input (shared, not copied)
/// for backward. Activations stay separate layers so the partitioner can cut
/// anywhere; sequential fuses a dense + relu pair (forward_relu) and, under
/// plain SGD, the weight's update into its gradient GEMM (backward_sgd).
class dense final : public layer {
public:
  /// `index` is the layer's global position in the model; it names the
  /// parameters "<index>.weight" and "<index>.bias".
  dense(std::size_t index, std::int64_t in, std::int64_t out);

  std::string kind() const override { return "dense"; }
  nlohmann::json spec() const override;
  shape_t output_shape(const shape_t& input) const override;
  tensor forward(const tensor& x, const forward_context& ctx) override;
  /// forward, then a ReLU applied in the same pass over the GEMM's output as
  /// the bias (the same float operations per element as forward and then
  /// relu's, so bitwise the same): sequential calls it for a dense layer that
  /// a relu follows, saving a pass over memory and an allocation.
  tensor forward_relu(const tensor& x, const forward_context& ctx);
  tensor backward(const tensor& dy, micro_batch_id mb, bool need_input_grad) override;
  /// backward() of a step's only micro-batch under plain SGD (no momentum,
  /// no weight decay) with learning rate `lr`: dx first (it reads the
  /// weight), then weight -= lr * dW inside the weight-gradient GEMM itself
  /// (alpha -lr, beta 1): no gradient buffer is written and no separate pass
  /// over the weight is made. Marks the weight updated_in_backward; the bias
  /// gets its gradient as in backward(). Where the weight's gradient would
  /// accumulate (not the step's first backward), plain backward().
  tensor backward_sgd(const tensor& dy, micro_batch_id mb, bool need_input_grad, float lr);
  /// dx now; the weight and bias gradients (a GEMM and a row sum) in
  /// backward_weight, from the input and dy kept until then.
  tensor backward_input(const tensor& dy, micro_batch_id mb, bool need_input_grad) override;
  void backward_weight(micro_batch_id mb) override;
  std::span<parameter> parameters() override { return params_; }
  /// PyTorch's default: weight and bias from U(-1/sqrt(in), 1/sqrt(in)).
  void init(std::uint64_t seed) override;
  std::size_t saved_bytes() const override;
  double forward_flops(const shape_t& input) const override;
  void clear_saved() override {
    saved_.clear();
    for_weight_.clear();
  }

  std::size_t index() const noexcept { return index_; }
  std::int64_t in_features() const noexcept { return in_; }
  std::int64_t out_features() const noexcept { return out_; }

private:
  std::size_t index_;
  std::string who_; // "dense layer <index>", for error messages
  std::int64_t in_, out_;
  std::array<parameter, 2> params_; // weight, bias
  saved_map<tensor> saved_;         // the input
  /// Between backward_input and backward_weight: the input and dy.
  saved_map<std::pair<tensor, tensor>> for_weight_;

  tensor forward_impl(const tensor& x, const forward_context& ctx, bool then_relu);
  /// c = alpha * dy^T x + beta * c over [out, in]: the weight gradient's
  /// GEMM, into the gradient (backward) or onto the weight (backward_sgd).
  void weight_gemm(const tensor& x, const tensor& dy, float alpha, float beta, float* c) const;
  /// Adds the weight and bias gradients of one micro-batch (x, dy).
  void add_weight_grads(const tensor& x, const tensor& dy);
  /// Adds the bias gradient of one micro-batch (x, dy).
  void add_bias_grad(const tensor& x, const tensor& dy);
  /// dL/dx of one micro-batch.
  tensor input_grad(const tensor& x, const tensor& dy) const;
};

} // namespace troupe::models
