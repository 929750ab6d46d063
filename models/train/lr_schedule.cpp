#include "models/train/lr_schedule.hpp"

#include <cmath>
#include <numbers>
#include <stdexcept>
#include <string>

namespace troupe::models {

lr_schedule::lr_schedule(lr_schedule_config c) : config_(c) {
  if (!(c.base_lr > 0.f) || !std::isfinite(c.base_lr) || !(c.min_lr >= 0.f) ||
      !(c.min_lr <= c.base_lr) || c.warmup_steps < 0 || c.total_steps <= c.warmup_steps)
    throw std::invalid_argument(
        "lr_schedule: needs 0 <= min_lr <= base_lr, base_lr > 0, warmup_steps >= 0 and "
        "total_steps > warmup_steps; got base_lr=" +
        std::to_string(c.base_lr) + " min_lr=" + std::to_string(c.min_lr) + " warmup_steps=" +
        std::to_string(c.warmup_steps) + " total_steps=" + std::to_string(c.total_steps));
}

float lr_schedule::lr_at(std::int64_t step) const {
  if (step < 0)
    throw std::invalid_argument("lr_schedule: negative step " + std::to_string(step));
  const auto& c = config_;
  if (step < c.warmup_steps)
    return static_cast<float>(static_cast<double>(c.base_lr) * static_cast<double>(step + 1) /
                              static_cast<double>(c.warmup_steps));
  if (step >= c.total_steps)
    return c.min_lr;
  const double p = static_cast<double>(step - c.warmup_steps) /
                   static_cast<double>(c.total_steps - c.warmup_steps);
  return static_cast<float>(c.min_lr + (static_cast<double>(c.base_lr) - c.min_lr) * 0.5 *
                                           (1.0 + std::cos(std::numbers::pi * p)));
}

} // namespace troupe::models
