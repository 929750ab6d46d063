#include "models/layers/maxpool2d.hpp"

#include "models/layers/checks.hpp"

namespace troupe::models {

namespace kc = kernels::cpu;

maxpool2d::maxpool2d(std::size_t index, std::int64_t kernel, std::int64_t stride)
    : index_(index), who_("maxpool2d layer " + std::to_string(index)), kernel_(kernel),
      stride_(stride == 0 ? kernel : stride) {
  if (kernel < 1 || stride < 0)
    fail(who_, "needs kernel >= 1 and stride >= 1");
}

nlohmann::json maxpool2d::spec() const {
  return {{"type", "maxpool2d"}, {"kernel", kernel_}, {"stride", stride_}};
}

kc::conv_geometry maxpool2d::geometry(const shape_t& s) const {
  if (s.size() != 3)
    fail(who_, "expected a per-sample input [C, H, W], got " + runtime::to_string(s));
  if (s[1] < kernel_ || s[2] < kernel_)
    fail(who_,
         "window " + std::to_string(kernel_) + " larger than the input " + runtime::to_string(s));
  kc::conv_geometry g;
  g.channels = s[0];
  g.height = s[1];
  g.width = s[2];
  g.kernel_h = g.kernel_w = kernel_;
  g.stride_h = g.stride_w = stride_;
  return g;
}

shape_t maxpool2d::output_shape(const shape_t& input) const {
  auto g = geometry(input);
  return {g.channels, g.out_h(), g.out_w()};
}

tensor maxpool2d::forward(const tensor& x, const forward_context& ctx) {
  check_input(x, runtime::dtype::f32, 4, who_);
  if (x.rank() != 4)
    fail(who_, "expected an NCHW input, got " + runtime::to_string(x.shape()));
  auto g = geometry({x.dim(1), x.dim(2), x.dim(3)});
  const std::int64_t n = x.dim(0);
  shape_t ys{n, g.channels, g.out_h(), g.out_w()};
  tensor y = tensor::empty(runtime::dtype::f32, ys);
  tensor argmax = tensor::empty(runtime::dtype::i32, std::move(ys));
  kc::maxpool2d_forward(x.data<float>(), n, g, y.mutable_data<float>(),
                        argmax.mutable_data<std::int32_t>());
  if (ctx.training)
    saved_.put(ctx.mb, saved{std::move(argmax), x.shape()});
  return y;
}

tensor maxpool2d::backward(const tensor& dy, micro_batch_id mb, bool need_input_grad) {
  saved s = saved_.take(mb, who_);
  check_grad(dy, s.argmax.shape(), who_);
  if (!need_input_grad)
    return {};
  auto g = geometry({s.input_shape[1], s.input_shape[2], s.input_shape[3]});
  tensor dx = tensor::empty(runtime::dtype::f32, s.input_shape);
  kc::maxpool2d_backward(dy.data<float>(), s.argmax.data<std::int32_t>(), s.input_shape[0], g,
                         dx.mutable_data<float>());
  return dx;
}

std::size_t maxpool2d::saved_bytes() const {
  return saved_.total([](const saved& s) { return s.argmax.nbytes(); });
}

double maxpool2d::forward_flops(const shape_t& input) const {
  auto g = geometry(input);
  return static_cast<double>(g.channels * g.out_h() * g.out_w() * kernel_ * kernel_);
}

} // namespace troupe::models
