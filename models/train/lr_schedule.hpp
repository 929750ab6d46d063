#pragma once

#include <cstdint>

namespace troupe::models {

/// Linear warm-up then cosine decay to a floor (the GPT-2 / nanoGPT schedule).
struct lr_schedule_config {
  float base_lr = 1e-3f;
  /// Steps 0 .. warmup_steps-1 ramp linearly up to base_lr; 0 disables warm-up.
  std::int64_t warmup_steps = 0;
  /// The step at which the cosine reaches min_lr (and stays there).
  std::int64_t total_steps = 1;
  float min_lr = 0.f;
};

/// The learning rate of each step, a pure function of the step number so a
/// resumed run (or any stage or replica) computes the same value without state:
///   step < warmup:          base_lr * (step + 1) / warmup_steps
///   warmup <= step < total: min_lr + (base_lr - min_lr) * (1 + cos(pi * p)) / 2,
///                           p = (step - warmup) / (total - warmup)
///   step >= total:          min_lr
/// Warm-up starts at base_lr / warmup (not 0) so the first step does
/// something.
class lr_schedule {
public:
  /// Throws std::invalid_argument unless 0 <= min_lr <= base_lr, base_lr > 0
  /// (finite), warmup_steps >= 0 and total_steps > warmup_steps.
  explicit lr_schedule(lr_schedule_config c);

  /// Steps count from 0; a negative step throws std::invalid_argument.
  float lr_at(std::int64_t step) const;
  const lr_schedule_config& config() const noexcept { return config_; }

private:
  lr_schedule_config config_;
};

} // namespace troupe::models
