#pragma once

#include "models/train/loss.hpp"

namespace troupe::models {

/// Mean squared error of predictions [B, K] f32 against real targets [B, K]
/// f32 (or [B] when K == 1): each row's loss is the mean over its K values of
/// (y - t)^2, loss_sum their sum over rows (so loss_sum / B is the MSE), and
/// abs_error_sum the same of |y - t| (for the MAE); correct stays 0.
/// dlogits = 2 (y - t) / K * grad_scale: pass 1/global_batch, as for
/// softmax_cross_entropy, so micro-batches and replicas add up to the mean's
/// gradient. Throws std::invalid_argument on a wrong shape or dtype.
loss_output mean_squared_error(const runtime::tensor& predictions, const runtime::tensor& targets,
                               float grad_scale, bool want_grad);

} // namespace troupe::models
