#include "models/layers/gelu.hpp"

#include "kernels/cpu/elementwise.hpp"
#include "models/layers/checks.hpp"

namespace troupe::models {

gelu::gelu(std::size_t index) : index_(index), who_("gelu layer " + std::to_string(index)) {}

tensor gelu::forward(const tensor& x, const forward_context& ctx) {
  check_input(x, runtime::dtype::f32, 1, who_);
  tensor y = tensor::empty(runtime::dtype::f32, x.shape());
  kernels::cpu::gelu_forward(x.data<float>(), y.mutable_data<float>(), x.numel());
  if (ctx.training)
    saved_.put(ctx.mb, x);
  return y;
}

tensor gelu::backward(const tensor& dy, micro_batch_id mb, bool need_input_grad) {
  tensor x = saved_.take(mb, who_);
  check_grad(dy, x.shape(), who_);
  if (!need_input_grad)
    return {};
  tensor dx = tensor::empty(runtime::dtype::f32, x.shape());
  kernels::cpu::gelu_backward(x.data<float>(), dy.data<float>(), dx.mutable_data<float>(),
                              x.numel());
  return dx;
}

std::size_t gelu::saved_bytes() const {
  return saved_.total([](const tensor& t) { return t.nbytes(); });
}

double gelu::forward_flops(const shape_t& input) const {
  // erf and a few multiplies: count ~8 flops per element for the cost model.
  return 8.0 * static_cast<double>(runtime::shape_numel(input));
}

} // namespace troupe::models
