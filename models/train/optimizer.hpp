#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "kernels/cpu/optimizers.hpp"
#include "models/layers/parameter.hpp"

namespace troupe::models {

/// Named optimizer state tensors, for checkpoints ("<param>.exp_avg", ...).
using named_tensors = std::vector<std::pair<std::string, runtime::tensor>>;

/// Updates parameters in place from their gradients (PyTorch semantics).
///
/// Updates write through tensor::mutable_data, so a parameter or state tensor
/// that was handed to someone else (a checkpoint writer, a parameter server)
/// is copied first and never changes under its reader. State is keyed by
/// parameter name, so the same optimizer works for any split of the model.
/// Parameters with an undefined gradient are skipped (like PyTorch's None
/// gradients); parameters with decay == false get no weight decay.
class optimizer {
public:
  virtual ~optimizer() = default;

  /// "sgd", "adam" or "adamw".
  virtual std::string kind() const = 0;
  /// The JSON make_optimizer() takes to rebuild an equal (state-less) optimizer.
  virtual nlohmann::json config() const = 0;
  /// The configured learning rate (step() takes the current one, for schedules).
  virtual float lr() const = 0;

  /// One update of every parameter with learning rate `lr`; counts a step.
  virtual void step(std::span<parameter* const> params, float lr) = 0;
  /// The update step() makes to `params`, without counting the step: a
  /// step's update done in parts (each layer's once its gradients are final,
  /// while they are still in cache) and then counted once with count_step().
  /// Every part sees the same step count (Adam's bias correction).
  /// Parameters the backward already updated (updated_in_backward) are
  /// skipped, and their mark cleared.
  void update(std::span<parameter* const> params, float lr);
  /// Whether step() is plain SGD, value -= lr * grad (no momentum, no
  /// weight decay): then a backward may make the update itself
  /// (sequential::backward's sgd_lr).
  virtual bool is_plain_sgd() const noexcept { return false; }
  /// Counts a step whose update was made in parts (update()).
  void count_step() noexcept { ++steps_; }

  /// State tensors sorted by name: "<param>.momentum_buffer" (SGD with
  /// momentum), "<param>.exp_avg" and "<param>.exp_avg_sq" (Adam). They share
  /// storage with the optimizer (no copy); later steps do not change them.
  named_tensors state() const;
  /// Number of completed steps (Adam's bias-correction count).
  std::int64_t steps() const noexcept { return steps_; }
  /// Replaces the state with `state` and `steps` (from state()/steps() of an
  /// optimizer of the same kind). Validates every name against `params` and
  /// the state kinds of this optimizer, and every shape and dtype against the
  /// parameter's; throws std::invalid_argument naming the tensor. Parameters
  /// without state start fresh.
  void load_state(std::span<parameter* const> params, const named_tensors& state,
                  std::int64_t steps);
  /// Forgets all state (steps back to 0).
  void reset();

protected:
  /// The state kinds per parameter, e.g. {"exp_avg", "exp_avg_sq"}.
  virtual std::vector<std::string> slot_names() const = 0;
  /// A parameter's state tensors, one per slot_names() entry (undefined until
  /// its first update).
  struct slots {
    std::vector<runtime::tensor> tensors;
  };
  /// The `count` slots of a parameter, created undefined on first use.
  slots& slots_of(const parameter& p, std::size_t count);
  /// Checks that p's gradient can update p; false when it has no gradient.
  static bool has_usable_grad(const parameter& p);

  std::int64_t steps_ = 0;
  std::map<std::string, slots> state_;
};

/// SGD with momentum (dampening 0, no Nesterov) and L2 weight decay.
class sgd final : public optimizer {
public:
  explicit sgd(kernels::cpu::sgd_options o);

  std::string kind() const override { return "sgd"; }
  nlohmann::json config() const override;
  float lr() const override { return options_.lr; }
  void step(std::span<parameter* const> params, float lr) override;
  bool is_plain_sgd() const noexcept override {
    return options_.momentum == 0.f && options_.weight_decay == 0.f;
  }
  const kernels::cpu::sgd_options& options() const noexcept { return options_; }

protected:
  std::vector<std::string> slot_names() const override;

private:
  kernels::cpu::sgd_options options_;
};

/// Adam (L2 weight decay) or, with options.decoupled, AdamW.
class adam final : public optimizer {
public:
  explicit adam(kernels::cpu::adam_options o);

  std::string kind() const override { return options_.decoupled ? "adamw" : "adam"; }
  nlohmann::json config() const override;
  float lr() const override { return options_.lr; }
  void step(std::span<parameter* const> params, float lr) override;
  const kernels::cpu::adam_options& options() const noexcept { return options_; }

protected:
  std::vector<std::string> slot_names() const override { return {"exp_avg", "exp_avg_sq"}; }

private:
  kernels::cpu::adam_options options_;
};

/// {"type": "sgd" | "adam" | "adamw", "lr": .., "momentum": .. (sgd),
///  "weight_decay": .., "betas": [b1, b2], "eps": .. (adam, adamw)}.
/// Defaults as PyTorch's (lr 0.01 for sgd, 1e-3 for adam/adamw; AdamW's
/// weight_decay 0.01). Unknown types or fields and out-of-range values throw
/// std::invalid_argument.
std::unique_ptr<optimizer> make_optimizer(const nlohmann::json& config);

} // namespace troupe::models
