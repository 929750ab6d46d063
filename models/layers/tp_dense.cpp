#include "models/layers/tp_dense.hpp"

#include <cmath>
#include <stdexcept>

#include "kernels/cpu/elementwise.hpp"
#include "kernels/cpu/gemm.hpp"
#include "models/layers/checks.hpp"
#include "models/layers/init.hpp"

namespace troupe::models {

namespace kc = kernels::cpu;

namespace {

tp_dense::role role_of(const tp_param_split& s, const std::string& who) {
  if (s.axis == 0)
    return tp_dense::role::column;
  if (s.axis == 1)
    return tp_dense::role::row;
  fail(who, "a tensor-parallel dense layer needs its weight split along axis 0 (column) or 1 "
            "(row), got axis " +
                std::to_string(s.axis));
}

} // namespace

tp_dense::tp_dense(std::size_t index, std::int64_t in, std::int64_t out,
                   tp_param_split weight_split, std::shared_ptr<tp_group> group, bool full_edge)
    : index_(index), who_("dense layer " + std::to_string(index)), in_(in), out_(out),
      local_in_(in), local_out_(out), weight_split_(weight_split),
      role_(role_of(weight_split, who_)), group_(std::move(group)), full_edge_(full_edge) {
  if (in < 1 || out < 1)
    fail(who_,
         "in and out must be >= 1, got in=" + std::to_string(in) + " out=" + std::to_string(out));
  if (!group_)
    fail(who_, "a tensor-parallel dense layer needs a tp_group");
  const shape_t local = tp_slice_shape({out, in}, weight_split_, parameter_name(index, "weight"));
  local_out_ = local[0];
  local_in_ = local[1];
  param_splits_[0] = weight_split_;
  if (role_ == role::column)
    param_splits_[1] = weight_split_; // bias entries follow the weight rows
  params_[0] = make_parameter(index, "weight", local, true);
  params_[1] = make_parameter(index, "bias", {local_out_}, false);
}

nlohmann::json tp_dense::spec() const {
  return {{"type", "dense"}, {"in", in_}, {"out", out_}};
}

std::int64_t tp_dense::input_width() const noexcept {
  return role_ == role::row && !full_edge_ ? local_in_ : in_;
}

std::int64_t tp_dense::output_width() const noexcept {
  return role_ == role::column && !full_edge_ ? local_out_ : out_;
}

tp_param_split tp_dense::activation_split(std::size_t rank) const {
  tp_param_split s = weight_split_;
  s.axis = static_cast<int>(rank) - 1;
  return s;
}

shape_t tp_dense::output_shape(const shape_t& input) const {
  if (input.empty() || input.back() != input_width())
    fail(who_, "expected a per-sample input with last dimension " + std::to_string(input_width()) +
                   ", got " + runtime::to_string(input));
  shape_t s = input;
  s.back() = output_width();
  return s;
}

void tp_dense::init(std::uint64_t seed) {
  const float bound = 1.0f / std::sqrt(static_cast<float>(in_));
  const shape_t full_shapes[2] = {{out_, in_}, {out_}};
  for (std::size_t i = 0; i < params_.size(); ++i) {
    parameter& p = params_[i];
    if (param_splits_[i].replicated()) {
      init_uniform(p, seed, bound);
      continue;
    }
    parameter full;
    full.name = p.name;
    full.value = tensor::empty(runtime::dtype::f32, full_shapes[i]);
    init_uniform(full, seed, bound);
    p.value = tp_take_slice(full.value, param_splits_[i], p.name);
  }
}

tensor tp_dense::reduce(const tensor& t) {
  tensor r = group_->all_reduce_sum(t);
  if (!r.defined() || r.type() != runtime::dtype::f32 || r.shape() != t.shape())
    throw std::runtime_error(who_ + ": the tensor-parallel all-reduce of an f32 " +
                             runtime::to_string(t.shape()) + " tensor returned " +
                             (r.defined() ? runtime::to_string(r.shape()) : "nothing"));
  return r;
}

tensor tp_dense::gather(const tensor& local) {
  const tp_param_split s = activation_split(local.rank());
  shape_t full_shape = local.shape();
  full_shape.back() = s.blocks * s.full;
  tensor full = tensor::zeros(runtime::dtype::f32, std::move(full_shape));
  tp_put_slice(full, local, s, who_ + " activation");
  return reduce(full);
}

tensor tp_dense::forward(const tensor& x, const forward_context& ctx) {
  check_input(x, runtime::dtype::f32, 2, who_);
  if (x.shape().back() != input_width())
    fail(who_, "input " + runtime::to_string(x.shape()) + " does not end in " +
                   std::to_string(input_width()));
  tensor xl = role_ == role::row && full_edge_
                  ? tp_take_slice(x, activation_split(x.rank()), who_ + " input")
                  : x;
  const std::int64_t rows = xl.numel() / local_in_;
  shape_t ys = xl.shape();
  ys.back() = local_out_;
  tensor y = tensor::empty(runtime::dtype::f32, std::move(ys));
  kc::gemm(kc::trans::no, kc::trans::yes, rows, local_out_, local_in_, 1.0f, xl.data<float>(),
           local_in_, params_[0].value.data<float>(), local_in_, 0.0f, y.mutable_data<float>(),
           local_out_);
  if (role_ == role::column) {
    kc::add_bias_rows(y.mutable_data<float>(), params_[1].value.data<float>(), rows, local_out_);
    if (full_edge_)
      y = gather(y);
  } else {
    // Partial sums over the rank's input features; the bias joins once, after
    // the sum, so it is counted once and comes out identical on every rank.
    y = reduce(y);
    kc::add_bias_rows(y.mutable_data<float>(), params_[1].value.data<float>(), rows, out_);
  }
  if (ctx.training)
    saved_.put(ctx.mb, std::move(xl));
  return y;
}

std::pair<tensor, tensor> tp_dense::take_backward(const tensor& dy, micro_batch_id mb) {
  tensor xl = saved_.take(mb, who_);
  shape_t ys = xl.shape();
  ys.back() = output_width();
  check_grad(dy, ys, who_);
  tensor dyl = role_ == role::column && full_edge_
                   ? tp_take_slice(dy, activation_split(dy.rank()), who_ + " output gradient")
                   : dy;
  return {std::move(xl), std::move(dyl)};
}

void tp_dense::add_weight_grads(const tensor& xl, const tensor& dyl) {
  const std::int64_t rows = xl.numel() / local_in_;
  const float* dyp = dyl.data<float>();
  auto& w = params_[0];
  auto& b = params_[1];
  bool acc_w = prepare_grad(w);
  kc::gemm(kc::trans::yes, kc::trans::no, local_out_, local_in_, rows, 1.0f, dyp, local_out_,
           xl.data<float>(), local_in_, acc_w ? 1.0f : 0.0f, w.grad.mutable_data<float>(),
           local_in_);
  w.grad_fresh = false;
  bool acc_b = prepare_grad(b);
  kc::bias_grad_rows(dyp, b.grad.mutable_data<float>(), rows, local_out_, acc_b);
  b.grad_fresh = false;
}

tensor tp_dense::input_grad(const tensor& xl, const tensor& dyl) {
  const std::int64_t rows = xl.numel() / local_in_;
  tensor dx = tensor::empty(runtime::dtype::f32, xl.shape());
  kc::gemm(kc::trans::no, kc::trans::no, rows, local_in_, local_out_, 1.0f, dyl.data<float>(),
           local_out_, params_[0].value.data<float>(), local_in_, 0.0f, dx.mutable_data<float>(),
           local_in_);
  if (role_ == role::column)
    return reduce(dx); // each rank's output features contribute to every input feature
  return full_edge_ ? gather(dx) : dx;
}

tensor tp_dense::backward(const tensor& dy, micro_batch_id mb, bool need_input_grad) {
  auto [xl, dyl] = take_backward(dy, mb);
  add_weight_grads(xl, dyl);
  return need_input_grad ? input_grad(xl, dyl) : tensor{};
}

tensor tp_dense::backward_input(const tensor& dy, micro_batch_id mb, bool need_input_grad) {
  auto [xl, dyl] = take_backward(dy, mb);
  tensor dx = need_input_grad ? input_grad(xl, dyl) : tensor{};
  for_weight_.put(mb, {std::move(xl), std::move(dyl)});
  return dx;
}

void tp_dense::backward_weight(micro_batch_id mb) {
  auto [xl, dyl] = for_weight_.take(mb, who_);
  add_weight_grads(xl, dyl);
}

std::size_t tp_dense::saved_bytes() const {
  return saved_.total([](const tensor& t) { return t.nbytes(); }) +
         for_weight_.total([](const std::pair<tensor, tensor>& p) {
           return p.first.nbytes() + p.second.nbytes();
         });
}

double tp_dense::forward_flops(const shape_t& input) const {
  double rows =
      static_cast<double>(runtime::shape_numel(input)) / static_cast<double>(input_width());
  return 2.0 * rows * static_cast<double>(local_in_) * static_cast<double>(local_out_);
}

} // namespace troupe::models
