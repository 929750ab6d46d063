#include "models/layers/dropout.hpp"

#include "kernels/cpu/dropout.hpp"
#include "models/layers/checks.hpp"
#include "runtime/rng.hpp"

namespace troupe::models {

dropout::dropout(std::size_t index, double p)
    : index_(index), who_("dropout layer " + std::to_string(index)), p_(p) {
  if (!(p >= 0.0 && p < 1.0))
    fail(who_, "p must be in [0, 1), got " + std::to_string(p));
}

std::uint64_t dropout::mask_key(std::int64_t step) const noexcept {
  using runtime::mix64;
  return mix64(mix64(runtime::hash_name("dropout") ^ static_cast<std::uint64_t>(index_)) ^
               static_cast<std::uint64_t>(step));
}

tensor dropout::forward(const tensor& x, const forward_context& ctx) {
  check_input(x, runtime::dtype::f32, 1, who_);
  if (!ctx.training)
    return x;
  if (p_ == 0.0) {
    saved_.put(ctx.mb, saved{{}, x.shape()});
    return x;
  }
  const std::int64_t rows = x.dim(0);
  const std::int64_t cols = rows == 0 ? 0 : x.numel() / rows;
  tensor y = tensor::empty(runtime::dtype::f32, x.shape());
  tensor mask = tensor::empty(runtime::dtype::u8, x.shape());
  kernels::cpu::dropout_forward(
      x.data<float>(), y.mutable_data<float>(), mask.mutable_data<std::uint8_t>(), rows, cols,
      static_cast<float>(p_), ctx.seed, mask_key(ctx.step), ctx.sample_offset);
  saved_.put(ctx.mb, saved{std::move(mask), x.shape()});
  return y;
}

tensor dropout::backward(const tensor& dy, micro_batch_id mb, bool need_input_grad) {
  saved s = saved_.take(mb, who_);
  check_grad(dy, s.shape, who_);
  if (!need_input_grad)
    return {};
  if (!s.mask.defined())
    return dy;
  tensor dx = tensor::empty(runtime::dtype::f32, dy.shape());
  kernels::cpu::dropout_backward(dy.data<float>(), s.mask.data<std::uint8_t>(),
                                 dx.mutable_data<float>(), dy.numel(), static_cast<float>(p_));
  return dx;
}

std::size_t dropout::saved_bytes() const {
  return saved_.total([](const saved& s) { return s.mask.defined() ? s.mask.nbytes() : 0; });
}

double dropout::forward_flops(const shape_t& input) const {
  return 2.0 * static_cast<double>(runtime::shape_numel(input));
}

} // namespace troupe::models
