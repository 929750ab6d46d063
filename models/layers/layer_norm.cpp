#include "models/layers/layer_norm.hpp"

#include "kernels/cpu/norm.hpp"
#include "models/layers/checks.hpp"
#include "models/layers/init.hpp"

namespace troupe::models {

namespace kc = kernels::cpu;

layer_norm::layer_norm(std::size_t index, std::int64_t dim, double eps)
    : index_(index), who_("layer_norm layer " + std::to_string(index)), dim_(dim), eps_(eps) {
  if (dim < 1 || !(eps > 0.0))
    fail(who_, "needs dim >= 1 and eps > 0");
  params_[0] = make_parameter(index, "weight", {dim}, false);
  params_[1] = make_parameter(index, "bias", {dim}, false);
  init(0);
}

nlohmann::json layer_norm::spec() const {
  return {{"type", "layer_norm"}, {"dim", dim_}, {"eps", eps_}};
}

shape_t layer_norm::output_shape(const shape_t& input) const {
  if (input.empty() || input.back() != dim_)
    fail(who_, "expected a per-sample input with last dimension " + std::to_string(dim_) +
                   ", got " + runtime::to_string(input));
  return input;
}

void layer_norm::init(std::uint64_t) {
  init_constant(params_[0], 1.0f);
  init_constant(params_[1], 0.0f);
}

tensor layer_norm::forward(const tensor& x, const forward_context& ctx) {
  check_input(x, runtime::dtype::f32, 2, who_);
  if (x.shape().back() != dim_)
    fail(who_,
         "input " + runtime::to_string(x.shape()) + " does not end in " + std::to_string(dim_));
  const std::int64_t rows = x.numel() / dim_;
  tensor y = tensor::empty(runtime::dtype::f32, x.shape());
  tensor mean = tensor::empty(runtime::dtype::f32, {rows});
  tensor rstd = tensor::empty(runtime::dtype::f32, {rows});
  kc::layernorm_forward(x.data<float>(), params_[0].value.data<float>(),
                        params_[1].value.data<float>(), rows, dim_, static_cast<float>(eps_),
                        y.mutable_data<float>(), mean.mutable_data<float>(),
                        rstd.mutable_data<float>());
  if (ctx.training)
    saved_.put(ctx.mb, saved{x, std::move(mean), std::move(rstd)});
  return y;
}

tensor layer_norm::backward(const tensor& dy, micro_batch_id mb, bool need_input_grad) {
  saved s = saved_.take(mb, who_);
  check_grad(dy, s.x.shape(), who_);
  const std::int64_t rows = s.x.numel() / dim_;
  auto& g = params_[0];
  auto& b = params_[1];
  bool acc_g = prepare_grad(g);
  bool acc_b = prepare_grad(b);
  bool acc = acc_g || acc_b;
  if (acc && !acc_g)
    fill(g.grad, 0.f);
  if (acc && !acc_b)
    fill(b.grad, 0.f);
  tensor dx;
  if (need_input_grad)
    dx = tensor::empty(runtime::dtype::f32, s.x.shape());
  kc::layernorm_backward(s.x.data<float>(), g.value.data<float>(), dy.data<float>(),
                         s.mean.data<float>(), s.rstd.data<float>(), rows, dim_,
                         need_input_grad ? dx.mutable_data<float>() : nullptr,
                         g.grad.mutable_data<float>(), b.grad.mutable_data<float>(), acc);
  g.grad_fresh = false;
  b.grad_fresh = false;
  return dx;
}

std::size_t layer_norm::saved_bytes() const {
  return saved_.total(
      [](const saved& s) { return s.x.nbytes() + s.mean.nbytes() + s.rstd.nbytes(); });
}

double layer_norm::forward_flops(const shape_t& input) const {
  return 8.0 * static_cast<double>(runtime::shape_numel(input));
}

} // namespace troupe::models
