#include "models/train/sequence_loss.hpp"

#include <stdexcept>
#include <string>

namespace troupe::models {

loss_output sequence_cross_entropy(const runtime::tensor& logits, const runtime::tensor& targets,
                                   float grad_scale, bool want_grad) {
  if (!logits.defined() || logits.type() != runtime::dtype::f32 || logits.rank() != 3 ||
      !targets.defined() || targets.type() != runtime::dtype::i32 || targets.rank() != 2 ||
      targets.dim(0) != logits.dim(0) || targets.dim(1) != logits.dim(1))
    throw std::invalid_argument(
        "sequence_cross_entropy: expected f32 logits [B, T, V] and i32 targets [B, T], got " +
        (logits.defined() ? std::string{runtime::to_string(logits.type())} + " " +
                                runtime::to_string(logits.shape())
                          : std::string{"undefined"}) +
        " and " +
        (targets.defined() ? std::string{runtime::to_string(targets.type())} + " " +
                                 runtime::to_string(targets.shape())
                           : std::string{"undefined"}));
  const std::int64_t rows = logits.dim(0) * logits.dim(1);
  loss_output out = softmax_cross_entropy(logits.reshape({rows, logits.dim(2)}),
                                          targets.reshape({rows}), grad_scale, want_grad);
  if (out.dlogits.defined())
    out.dlogits = out.dlogits.reshape(logits.shape());
  return out;
}

bool is_sequence_model(const model_spec& spec) {
  if (spec.input_dtype != runtime::dtype::i32 || spec.input_shape.size() != 1)
    return false;
  const auto out = output_shape(spec);
  return out.size() == 2 && out[0] == spec.input_shape[0];
}

} // namespace troupe::models
