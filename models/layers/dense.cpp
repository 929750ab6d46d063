#include "models/layers/dense.hpp"

#include <cmath>

#include "kernels/cpu/elementwise.hpp"
#include "kernels/cpu/gemm.hpp"
#include "models/layers/checks.hpp"
#include "models/layers/init.hpp"

namespace troupe::models {

namespace kc = kernels::cpu;

dense::dense(std::size_t index, std::int64_t in, std::int64_t out)
    : index_(index), who_("dense layer " + std::to_string(index)), in_(in), out_(out) {
  if (in < 1 || out < 1)
    fail(who_,
         "in and out must be >= 1, got in=" + std::to_string(in) + " out=" + std::to_string(out));
  params_[0] = make_parameter(index, "weight", {out, in}, true);
  params_[1] = make_parameter(index, "bias", {out}, false);
}

nlohmann::json dense::spec() const {
  return {{"type", "dense"}, {"in", in_}, {"out", out_}};
}

shape_t dense::output_shape(const shape_t& input) const {
  if (input.empty() || input.back() != in_)
    fail(who_, "expected a per-sample input with last dimension " + std::to_string(in_) + ", got " +
                   runtime::to_string(input));
  shape_t s = input;
  s.back() = out_;
  return s;
}

void dense::init(std::uint64_t seed) {
  float bound = 1.0f / std::sqrt(static_cast<float>(in_));
  init_uniform(params_[0], seed, bound);
  init_uniform(params_[1], seed, bound);
}

tensor dense::forward(const tensor& x, const forward_context& ctx) {
  return forward_impl(x, ctx, false);
}

tensor dense::forward_relu(const tensor& x, const forward_context& ctx) {
  return forward_impl(x, ctx, true);
}

tensor dense::forward_impl(const tensor& x, const forward_context& ctx, bool then_relu) {
  check_input(x, runtime::dtype::f32, 2, who_);
  if (x.shape().back() != in_)
    fail(who_,
         "input " + runtime::to_string(x.shape()) + " does not end in " + std::to_string(in_));
  const std::int64_t rows = x.numel() / in_;
  shape_t ys = x.shape();
  ys.back() = out_;
  tensor y = tensor::empty(runtime::dtype::f32, std::move(ys));
  float* yp = y.mutable_data<float>();
  kc::gemm(kc::trans::no, kc::trans::yes, rows, out_, in_, 1.0f, x.data<float>(), in_,
           params_[0].value.data<float>(), in_, 0.0f, yp, out_);
  if (then_relu)
    kc::add_bias_relu_rows(yp, params_[1].value.data<float>(), rows, out_);
  else
    kc::add_bias_rows(yp, params_[1].value.data<float>(), rows, out_);
  if (ctx.training)
    saved_.put(ctx.mb, x);
  return y;
}

void dense::weight_gemm(const tensor& x, const tensor& dy, float alpha, float beta,
                        float* c) const {
  const std::int64_t rows = x.numel() / in_;
  kc::gemm(kc::trans::yes, kc::trans::no, out_, in_, rows, alpha, dy.data<float>(), out_,
           x.data<float>(), in_, beta, c, in_);
}

void dense::add_weight_grads(const tensor& x, const tensor& dy) {
  auto& w = params_[0];
  bool acc_w = prepare_grad(w);
  weight_gemm(x, dy, 1.0f, acc_w ? 1.0f : 0.0f, w.grad.mutable_data<float>());
  w.grad_fresh = false;
  add_bias_grad(x, dy);
}

void dense::add_bias_grad(const tensor& x, const tensor& dy) {
  const std::int64_t rows = x.numel() / in_;
  const float* dyp = dy.data<float>();
  auto& b = params_[1];
  bool acc_b = prepare_grad(b);
  kc::bias_grad_rows(dyp, b.grad.mutable_data<float>(), rows, out_, acc_b);
  b.grad_fresh = false;
}

tensor dense::input_grad(const tensor& x, const tensor& dy) const {
  const std::int64_t rows = x.numel() / in_;
  tensor dx = tensor::empty(runtime::dtype::f32, x.shape());
  kc::gemm(kc::trans::no, kc::trans::no, rows, in_, out_, 1.0f, dy.data<float>(), out_,
           params_[0].value.data<float>(), in_, 0.0f, dx.mutable_data<float>(), in_);
  return dx;
}

namespace {

void check_dy(const tensor& x, const tensor& dy, std::int64_t out, const std::string& who) {
  shape_t ys = x.shape();
  ys.back() = out;
  check_grad(dy, ys, who);
}

} // namespace

tensor dense::backward(const tensor& dy, micro_batch_id mb, bool need_input_grad) {
  tensor x = saved_.take(mb, who_);
  check_dy(x, dy, out_, who_);
  add_weight_grads(x, dy);
  return need_input_grad ? input_grad(x, dy) : tensor{};
}

tensor dense::backward_sgd(const tensor& dy, micro_batch_id mb, bool need_input_grad, float lr) {
  auto& w = params_[0];
  if (!w.grad_fresh)
    return backward(dy, mb, need_input_grad);
  tensor x = saved_.take(mb, who_);
  check_dy(x, dy, out_, who_);
  tensor dx = need_input_grad ? input_grad(x, dy) : tensor{};
  weight_gemm(x, dy, -lr, 1.0f, w.value.mutable_data<float>());
  w.updated_in_backward = true;
  add_bias_grad(x, dy);
  return dx;
}

tensor dense::backward_input(const tensor& dy, micro_batch_id mb, bool need_input_grad) {
  tensor x = saved_.take(mb, who_);
  check_dy(x, dy, out_, who_);
  tensor dx = need_input_grad ? input_grad(x, dy) : tensor{};
  for_weight_.put(mb, {std::move(x), dy});
  return dx;
}

void dense::backward_weight(micro_batch_id mb) {
  auto [x, dy] = for_weight_.take(mb, who_);
  add_weight_grads(x, dy);
}

std::size_t dense::saved_bytes() const {
  return saved_.total([](const tensor& t) { return t.nbytes(); }) +
         for_weight_.total([](const std::pair<tensor, tensor>& p) {
           return p.first.nbytes() + p.second.nbytes();
         });
}

double dense::forward_flops(const shape_t& input) const {
  double rows = static_cast<double>(runtime::shape_numel(input)) / static_cast<double>(in_);
  return 2.0 * rows * static_cast<double>(in_) * static_cast<double>(out_);
}

} // namespace troupe::models
