#pragma once

#include <span>

#include "models/layers/parameter.hpp"

namespace troupe::models {

/// Gradient-norm clipping by the global L2 norm over every parameter of the
/// model, as torch.nn.utils.clip_grad_norm_. In three parts so the global norm
/// can span pipeline stages and tensor-parallel shards: each holder computes
/// sum_of_squares() of its own parameters, the partial sums are added up (an
/// all-reduce of one double), and each holder then calls clip_by_global_norm()
/// with the total. Parameters without a gradient (undefined grad) are skipped,
/// like the optimizers skip them. A parameter replicated on several shards
/// must be counted by one of them only.

/// Sum over params of sum(grad^2), accumulated in double.
double sum_of_squares(std::span<parameter* const> params);

/// sqrt(sum_of_squares(params)): the global norm when params is the whole model.
double global_grad_norm(std::span<parameter* const> params);

/// Scales every gradient in params by max_norm / (norm + 1e-6) when that is
/// < 1, with norm = sqrt(total_sum_of_squares) (PyTorch's formula). Returns the
/// norm before clipping. A non-finite norm leaves the gradients untouched (the
/// caller decides whether to skip the step). Throws std::invalid_argument for
/// max_norm <= 0 or a negative total.
double clip_by_global_norm(std::span<parameter* const> params, double total_sum_of_squares,
                           double max_norm);

} // namespace troupe::models
