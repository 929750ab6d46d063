#include "models/layers/flatten.hpp"

#include "models/layers/checks.hpp"

namespace troupe::models {

flatten::flatten(std::size_t index)
    : index_(index), who_("flatten layer " + std::to_string(index)) {}

shape_t flatten::output_shape(const shape_t& input) const {
  return {runtime::shape_numel(input)};
}

tensor flatten::forward(const tensor& x, const forward_context& ctx) {
  check_input(x, runtime::dtype::f32, 1, who_);
  const std::int64_t n = x.dim(0);
  tensor y = x.reshape({n, n == 0 ? 0 : x.numel() / n});
  if (ctx.training)
    saved_.put(ctx.mb, x.shape());
  return y;
}

tensor flatten::backward(const tensor& dy, micro_batch_id mb, bool need_input_grad) {
  shape_t in = saved_.take(mb, who_);
  const std::int64_t n = in.at(0);
  check_grad(dy, {n, n == 0 ? 0 : runtime::shape_numel(in) / n}, who_);
  if (!need_input_grad)
    return {};
  return dy.reshape(std::move(in));
}

} // namespace troupe::models
