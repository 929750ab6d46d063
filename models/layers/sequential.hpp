#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "models/layers/layer.hpp"
#include "models/layers/model_spec.hpp"

namespace troupe::models {

/// A contiguous range of a model's layers (a whole model, or one pipeline
/// stage): forward chains them, backward runs them in reverse. Parameter names
/// keep the layers' global indices, so a stage holding layers [2, 5) exposes
/// "2.weight", not "0.weight".
class sequential {
public:
  sequential() = default;
  explicit sequential(std::vector<std::unique_ptr<layer>> layers);
  /// Builds and initialises layers [begin, end) of `spec` (see instantiate()).
  sequential(const model_spec& spec, std::size_t begin, std::size_t end, std::uint64_t seed);

  tensor forward(const tensor& x, const forward_context& ctx);
  /// Runs backward through every layer in reverse. Inner layers always produce
  /// their input gradient; the first layer of the range gets `need_input_grad`
  /// (false for a model's first stage, which needs no dL/dx). Returns dL/dx or
  /// an undefined tensor.
  tensor backward(const tensor& dy, micro_batch_id mb, bool need_input_grad);
  /// The same, calling `after_layer(i)` once layer i (local index) has run its
  /// backward, i.e. once its parameters' gradients for this micro-batch are
  /// in: data parallelism launches gradient all-reduces from there, while
  /// the layers below are still running.
  /// With `sgd_lr` (a step's only micro-batch under plain SGD, the update
  /// folded into the backward), dense layers update their weight inside the
  /// weight-gradient GEMM (dense::backward_sgd); the optimizer's update()
  /// then skips those weights.
  tensor backward(const tensor& dy, micro_batch_id mb, bool need_input_grad,
                  const std::function<void(std::size_t)>& after_layer,
                  std::optional<float> sgd_lr = std::nullopt);
  /// The backward split for zero-bubble schedules (layer::backward_input):
  /// the input gradients through every layer in reverse, then later the
  /// weight gradients, also in reverse, calling `after_layer(i)` once layer
  /// i's are in. Together bitwise the same as backward().
  tensor backward_input(const tensor& dy, micro_batch_id mb, bool need_input_grad);
  void backward_weight(micro_batch_id mb, const std::function<void(std::size_t)>& after_layer = {});

  /// All parameters, in layer order (weight before bias).
  std::vector<parameter*> parameters();
  /// Parameters by global name ("2.weight").
  std::map<std::string, parameter*> named_parameters();
  /// The parameter with that global name, or nullptr.
  parameter* find_parameter(std::string_view name);
  /// Marks every gradient fresh: the next backward overwrites instead of adding.
  void zero_grad();
  std::size_t saved_bytes() const;
  void clear_saved();
  std::int64_t parameter_count() const;

  std::size_t size() const noexcept { return layers_.size(); }
  bool empty() const noexcept { return layers_.empty(); }
  layer& at(std::size_t i) { return *layers_.at(i); }
  const layer& at(std::size_t i) const { return *layers_.at(i); }

private:
  std::vector<std::unique_ptr<layer>> layers_;
};

} // namespace troupe::models
