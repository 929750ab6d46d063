#include "models/train/grad_clip.hpp"

#include <cmath>
#include <stdexcept>
#include <string>

#include "kernels/cpu/elementwise.hpp"

namespace troupe::models {

namespace kc = kernels::cpu;

double sum_of_squares(std::span<parameter* const> params) {
  double s = 0.0;
  for (const parameter* p : params)
    if (p->grad.defined())
      s += kc::sum_squares(p->grad.data<float>(), p->grad.numel());
  return s;
}

double global_grad_norm(std::span<parameter* const> params) {
  return std::sqrt(sum_of_squares(params));
}

double clip_by_global_norm(std::span<parameter* const> params, double total_sum_of_squares,
                           double max_norm) {
  if (!(max_norm > 0.0))
    throw std::invalid_argument("clip_by_global_norm: max_norm must be > 0, got " +
                                std::to_string(max_norm));
  if (total_sum_of_squares < 0.0)
    throw std::invalid_argument("clip_by_global_norm: negative sum of squares " +
                                std::to_string(total_sum_of_squares));
  const double norm = std::sqrt(total_sum_of_squares);
  if (!std::isfinite(norm))
    return norm;
  const double coef = max_norm / (norm + 1e-6);
  if (coef >= 1.0)
    return norm;
  const auto c = static_cast<float>(coef);
  for (parameter* p : params)
    if (p->grad.defined()) {
      float* g = p->grad.mutable_data<float>();
      kc::scale(g, g, c, p->grad.numel());
    }
  return norm;
}

} // namespace troupe::models
