#include "models/layers/relu.hpp"

#include "kernels/cpu/elementwise.hpp"
#include "models/layers/checks.hpp"

namespace troupe::models {

relu::relu(std::size_t index) : index_(index), who_("relu layer " + std::to_string(index)) {}

tensor relu::forward(const tensor& x, const forward_context& ctx) {
  check_input(x, runtime::dtype::f32, 1, who_);
  tensor y = tensor::empty(runtime::dtype::f32, x.shape());
  kernels::cpu::relu_forward(x.data<float>(), y.mutable_data<float>(), x.numel());
  if (ctx.training)
    saved_.put(ctx.mb, y);
  return y;
}

void relu::keep_output(const tensor& y, const forward_context& ctx) {
  check_input(y, runtime::dtype::f32, 1, who_);
  if (ctx.training)
    saved_.put(ctx.mb, y);
}

tensor relu::backward(const tensor& dy, micro_batch_id mb, bool need_input_grad) {
  tensor y = saved_.take(mb, who_);
  check_grad(dy, y.shape(), who_);
  if (!need_input_grad)
    return {};
  tensor dx = tensor::empty(runtime::dtype::f32, y.shape());
  kernels::cpu::relu_backward(y.data<float>(), dy.data<float>(), dx.mutable_data<float>(),
                              y.numel());
  return dx;
}

std::size_t relu::saved_bytes() const {
  return saved_.total([](const tensor& t) { return t.nbytes(); });
}

double relu::forward_flops(const shape_t& input) const {
  return static_cast<double>(runtime::shape_numel(input));
}

} // namespace troupe::models
