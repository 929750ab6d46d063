#include "models/train/mse_loss.hpp"

#include <cmath>
#include <stdexcept>
#include <string>

namespace troupe::models {

namespace {

std::string describe(const runtime::tensor& t) {
  return t.defined()
             ? std::string{runtime::to_string(t.type())} + " " + runtime::to_string(t.shape())
             : std::string{"undefined"};
}

} // namespace

loss_output mean_squared_error(const runtime::tensor& predictions, const runtime::tensor& targets,
                               float grad_scale, bool want_grad) {
  if (!predictions.defined() || predictions.type() != runtime::dtype::f32 ||
      predictions.rank() != 2 || predictions.dim(1) < 1)
    throw std::invalid_argument("mean_squared_error: predictions must be f32 [B, K], got " +
                                describe(predictions));
  const auto rows = predictions.dim(0);
  const auto width = predictions.dim(1);
  if (!targets.defined() || targets.type() != runtime::dtype::f32 ||
      targets.numel() != predictions.numel() || targets.rank() < 1 || targets.dim(0) != rows)
    throw std::invalid_argument("mean_squared_error: targets must be f32 " +
                                runtime::to_string(predictions.shape()) + ", got " +
                                describe(targets));
  loss_output out;
  float* d = nullptr;
  if (want_grad) {
    out.dlogits = runtime::tensor::empty(runtime::dtype::f32, predictions.shape());
    d = out.dlogits.mutable_data<float>();
  }
  const auto* y = predictions.data<float>();
  const auto* t = targets.data<float>();
  const float g = 2.f / static_cast<float>(width) * grad_scale;
  for (std::int64_t r = 0; r < rows; ++r) {
    double sq = 0, abs = 0;
    for (std::int64_t k = 0; k < width; ++k) {
      const auto i = r * width + k;
      const float e = y[i] - t[i];
      sq += static_cast<double>(e) * e;
      abs += std::fabs(static_cast<double>(e));
      if (d)
        d[i] = e * g;
    }
    out.loss_sum += sq / static_cast<double>(width);
    out.abs_error_sum += abs / static_cast<double>(width);
  }
  return out;
}

} // namespace troupe::models
