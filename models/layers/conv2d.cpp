#include "models/layers/conv2d.hpp"

#include <cmath>

#include "models/layers/checks.hpp"
#include "models/layers/init.hpp"

namespace troupe::models {

namespace kc = kernels::cpu;

conv2d::conv2d(std::size_t index, std::int64_t in_channels, std::int64_t out_channels,
               std::int64_t kernel, std::int64_t stride, std::int64_t padding)
    : index_(index), who_("conv2d layer " + std::to_string(index)), in_channels_(in_channels),
      out_channels_(out_channels), kernel_(kernel), stride_(stride), padding_(padding) {
  if (in_channels < 1 || out_channels < 1 || kernel < 1 || stride < 1 || padding < 0)
    fail(who_, "needs in_channels, out_channels, kernel, stride >= 1 and padding >= 0");
  params_[0] = make_parameter(index, "weight", {out_channels, in_channels, kernel, kernel}, true);
  params_[1] = make_parameter(index, "bias", {out_channels}, false);
}

nlohmann::json conv2d::spec() const {
  return {{"type", "conv2d"},  {"in_channels", in_channels_}, {"out_channels", out_channels_},
          {"kernel", kernel_}, {"stride", stride_},           {"padding", padding_}};
}

kc::conv_geometry conv2d::geometry(const shape_t& s) const {
  if (s.size() != 3 || s[0] != in_channels_)
    fail(who_, "expected a per-sample input [" + std::to_string(in_channels_) + ", H, W], got " +
                   runtime::to_string(s));
  kc::conv_geometry g;
  g.channels = s[0];
  g.height = s[1];
  g.width = s[2];
  g.kernel_h = g.kernel_w = kernel_;
  g.stride_h = g.stride_w = stride_;
  g.pad_h = g.pad_w = padding_;
  if (g.height + 2 * padding_ < kernel_ || g.width + 2 * padding_ < kernel_)
    fail(who_, "kernel " + std::to_string(kernel_) + " does not fit the padded input " +
                   runtime::to_string(s));
  return g;
}

shape_t conv2d::output_shape(const shape_t& input) const {
  auto g = geometry(input);
  return {out_channels_, g.out_h(), g.out_w()};
}

void conv2d::init(std::uint64_t seed) {
  float bound = 1.0f / std::sqrt(static_cast<float>(in_channels_ * kernel_ * kernel_));
  init_uniform(params_[0], seed, bound);
  init_uniform(params_[1], seed, bound);
}

float* conv2d::scratch(const kc::conv_geometry& g) {
  auto n = static_cast<std::size_t>(g.channels * g.kernel_h * g.kernel_w * g.out_h() * g.out_w());
  if (col_.size() < n)
    col_.resize(n);
  return col_.data();
}

tensor conv2d::forward(const tensor& x, const forward_context& ctx) {
  check_input(x, runtime::dtype::f32, 4, who_);
  if (x.rank() != 4)
    fail(who_, "expected an NCHW input, got " + runtime::to_string(x.shape()));
  auto g = geometry({x.dim(1), x.dim(2), x.dim(3)});
  const std::int64_t n = x.dim(0);
  tensor y = tensor::empty(runtime::dtype::f32, {n, out_channels_, g.out_h(), g.out_w()});
  kc::conv2d_forward(x.data<float>(), params_[0].value.data<float>(),
                     params_[1].value.data<float>(), n, out_channels_, g, y.mutable_data<float>(),
                     scratch(g));
  if (ctx.training)
    saved_.put(ctx.mb, x);
  return y;
}

tensor conv2d::backward(const tensor& dy, micro_batch_id mb, bool need_input_grad) {
  tensor x = saved_.take(mb, who_);
  auto g = geometry({x.dim(1), x.dim(2), x.dim(3)});
  const std::int64_t n = x.dim(0);
  check_grad(dy, {n, out_channels_, g.out_h(), g.out_w()}, who_);

  auto& w = params_[0];
  auto& b = params_[1];
  // The kernel takes one accumulate flag for both gradients; when the two
  // flags disagree (someone reset only one), zero the fresh one and accumulate.
  bool acc_w = prepare_grad(w);
  bool acc_b = prepare_grad(b);
  bool acc = acc_w || acc_b;
  if (acc && !acc_w)
    fill(w.grad, 0.f);
  if (acc && !acc_b)
    fill(b.grad, 0.f);

  tensor dx;
  if (need_input_grad)
    dx = tensor::empty(runtime::dtype::f32, x.shape());
  kc::conv2d_backward(x.data<float>(), w.value.data<float>(), dy.data<float>(), n, out_channels_, g,
                      need_input_grad ? dx.mutable_data<float>() : nullptr,
                      w.grad.mutable_data<float>(), b.grad.mutable_data<float>(), acc, scratch(g));
  w.grad_fresh = false;
  b.grad_fresh = false;
  return dx;
}

std::size_t conv2d::saved_bytes() const {
  return saved_.total([](const tensor& t) { return t.nbytes(); });
}

double conv2d::forward_flops(const shape_t& input) const {
  auto g = geometry(input);
  return 2.0 * static_cast<double>(in_channels_ * kernel_ * kernel_) *
         static_cast<double>(out_channels_ * g.out_h() * g.out_w());
}

} // namespace troupe::models
