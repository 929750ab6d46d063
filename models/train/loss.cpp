#include "models/train/loss.hpp"

#include <stdexcept>
#include <string>

#include "kernels/cpu/loss.hpp"

namespace troupe::models {

loss_output softmax_cross_entropy(const runtime::tensor& logits, const runtime::tensor& labels,
                                  float grad_scale, bool want_grad) {
  auto describe = [](const runtime::tensor& t) {
    return t.defined()
               ? std::string{runtime::to_string(t.type())} + " " + runtime::to_string(t.shape())
               : std::string{"undefined"};
  };
  if (!logits.defined() || logits.type() != runtime::dtype::f32 || logits.rank() != 2 ||
      logits.dim(1) < 1)
    throw std::invalid_argument(
        "softmax_cross_entropy: logits must be f32 [B, C] with C >= 1, got " + describe(logits));
  if (!labels.defined() || labels.type() != runtime::dtype::i32 || labels.rank() != 1 ||
      labels.dim(0) != logits.dim(0))
    throw std::invalid_argument("softmax_cross_entropy: labels must be i32 [" +
                                std::to_string(logits.dim(0)) + "], got " + describe(labels));
  loss_output out;
  float* d = nullptr;
  if (want_grad) {
    out.dlogits = runtime::tensor::empty(runtime::dtype::f32, logits.shape());
    d = out.dlogits.mutable_data<float>();
  }
  auto r = kernels::cpu::softmax_cross_entropy(logits.data<float>(), labels.data<std::int32_t>(),
                                               logits.dim(0), logits.dim(1), grad_scale, d);
  out.loss_sum = r.loss_sum;
  out.correct = r.correct;
  return out;
}

} // namespace troupe::models
