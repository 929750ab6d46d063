#include "kernels/cpu/loss.hpp"

#include <cmath>
#include <stdexcept>
#include <string>

namespace troupe::kernels::cpu {

xent_result softmax_cross_entropy(const float* logits, const std::int32_t* labels,
                                  std::int64_t rows, std::int64_t classes, float grad_scale,
                                  float* dlogits) {
  // Validate every label before writing anything, so a bad batch leaves
  // dlogits untouched instead of half-written.
  for (std::int64_t r = 0; r < rows; ++r)
    if (labels[r] < 0 || labels[r] >= classes)
      throw std::invalid_argument("softmax_cross_entropy: label " + std::to_string(labels[r]) +
                                  " at row " + std::to_string(r) + " outside [0, " +
                                  std::to_string(classes) + ")");
  xent_result res;
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* __restrict x = logits + r * classes;
    // Subtracting the row max keeps exp() in range whatever the logits' scale;
    // the first maximum is the argmax (PyTorch's tie rule).
    float mx = x[0];
    std::int64_t arg = 0;
    for (std::int64_t c = 1; c < classes; ++c)
      if (x[c] > mx) {
        mx = x[c];
        arg = c;
      }
    double sum = 0.0;
    for (std::int64_t c = 0; c < classes; ++c)
      sum += std::exp(static_cast<double>(x[c]) - mx);
    const std::int32_t label = labels[r];
    // loss = -(x[label] - mx - log(sum)), in double.
    res.loss_sum += std::log(sum) - (static_cast<double>(x[label]) - mx);
    if (arg == label)
      ++res.correct;
    if (dlogits != nullptr) {
      float* __restrict d = dlogits + r * classes;
      const float inv = static_cast<float>(1.0 / sum);
      for (std::int64_t c = 0; c < classes; ++c)
        d[c] = std::exp(x[c] - mx) * inv * grad_scale;
      d[label] -= grad_scale;
    }
  }
  return res;
}

} // namespace troupe::kernels::cpu
