#pragma once

#include <cstdint>

namespace troupe::kernels::cpu {

/// Row-wise softmax of `rows` rows of `cols` scores, in place, with an optional
/// causal mask: row r of each [t x t] block (r = row % t) sees columns <= r.
void softmax_rows(float* x, std::int64_t rows, std::int64_t cols, bool causal);
/// Backward of softmax_rows given its output y: dx = y * (dy - sum(dy * y)).
/// dx may alias dy. Masked positions get 0.
void softmax_rows_backward(const float* y, const float* dy, float* dx, std::int64_t rows,
                           std::int64_t cols);

} // namespace troupe::kernels::cpu
