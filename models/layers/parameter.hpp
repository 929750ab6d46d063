#pragma once

#include <string>

#include "runtime/tensor.hpp"

namespace troupe::models {

/// A trainable tensor with its gradient. Names are global within a model
/// ("<layer index>.<name>", e.g. "0.weight", as torch.nn.Sequential names them)
/// so they stay the same however the model is split into stages or shards.
struct parameter {
  std::string name;
  runtime::tensor value;
  /// Gradient accumulated over the micro-batches of a step; same shape as value.
  runtime::tensor grad;
  /// When true, the next backward overwrites grad instead of adding to it
  /// (saves zeroing it at every step). Set by zero_grad(), cleared by backward.
  bool grad_fresh = true;
  /// Whether weight decay applies (false for biases and normalisation scales).
  bool decay = true;
  /// The backward already made this step's plain SGD update of value (a
  /// dense weight under sequential::backward with an SGD learning rate: the
  /// update rides in the weight-gradient GEMM) and grad was not written.
  /// optimizer::update() skips the parameter once and clears the mark.
  bool updated_in_backward = false;
};

} // namespace troupe::models
