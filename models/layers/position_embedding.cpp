#include "models/layers/position_embedding.hpp"

#include <algorithm>
#include <vector>

#include "kernels/cpu/elementwise.hpp"
#include "models/layers/checks.hpp"
#include "models/layers/init.hpp"

namespace troupe::models {

position_embedding::position_embedding(std::size_t index, std::int64_t context, std::int64_t dim)
    : index_(index), who_("position_embedding layer " + std::to_string(index)), context_(context),
      dim_(dim) {
  if (context < 1 || dim < 1)
    fail(who_, "needs context >= 1 and dim >= 1");
  params_[0] = make_parameter(index, "weight", {context, dim}, true);
}

nlohmann::json position_embedding::spec() const {
  return {{"type", "position_embedding"}, {"context", context_}, {"dim", dim_}};
}

shape_t position_embedding::output_shape(const shape_t& input) const {
  if (input.size() != 2 || input[1] != dim_ || input[0] < 1 || input[0] > context_)
    fail(who_, "expected a per-sample input [T, " + std::to_string(dim_) + "] with 1 <= T <= " +
                   std::to_string(context_) + ", got " + runtime::to_string(input));
  return input;
}

void position_embedding::init(std::uint64_t seed) {
  init_normal(params_[0], seed);
}

tensor position_embedding::forward(const tensor& x, const forward_context& ctx) {
  check_input(x, runtime::dtype::f32, 3, who_);
  output_shape({x.shape().begin() + 1, x.shape().end()});
  const std::int64_t batch = x.dim(0), n = x.dim(1) * dim_;
  tensor y = tensor::empty(runtime::dtype::f32, x.shape());
  const float* w = params_[0].value.data<float>();
  const float* xp = x.data<float>();
  float* yp = y.mutable_data<float>();
  for (std::int64_t b = 0; b < batch; ++b)
    for (std::int64_t i = 0; i < n; ++i)
      yp[b * n + i] = xp[b * n + i] + w[i];
  if (ctx.training)
    saved_.put(ctx.mb, x.shape());
  return y;
}

tensor position_embedding::backward(const tensor& dy, micro_batch_id mb, bool need_input_grad) {
  shape_t s = saved_.take(mb, who_);
  check_grad(dy, s, who_);
  const std::int64_t batch = s[0], n = s[1] * dim_;
  auto& w = params_[0];
  const bool acc = prepare_grad(w);
  float* g = w.grad.mutable_data<float>();
  if (!acc) // rows >= T get no gradient from this micro-batch
    std::fill(g, g + w.grad.numel(), 0.f);
  // The micro-batch's sum over its sequences, formed whole, then added.
  std::vector<float> sum(static_cast<std::size_t>(n), 0.f);
  const float* d = dy.data<float>();
  for (std::int64_t b = 0; b < batch; ++b)
    for (std::int64_t i = 0; i < n; ++i)
      sum[static_cast<std::size_t>(i)] += d[b * n + i];
  kernels::cpu::add_inplace(g, sum.data(), n);
  w.grad_fresh = false;
  return need_input_grad ? dy : tensor{};
}

double position_embedding::forward_flops(const shape_t& input) const {
  return static_cast<double>(runtime::shape_numel(input));
}

} // namespace troupe::models
