#pragma once

#include <cstdint>

namespace troupe::kernels::cpu {

/// y[r, c] += bias[c] for a rows x cols row-major matrix.
void add_bias_rows(float* y, const float* bias, std::int64_t rows, std::int64_t cols);
/// Fused bias + ReLU in place: y = max(y + bias, 0).
void add_bias_relu_rows(float* y, const float* bias, std::int64_t rows, std::int64_t cols);
/// db[c] (+)= sum_r dy[r, c]; accumulate=false overwrites db. The call's sum
/// is formed whole and then added to db as one term (accumulate_whole), so a
/// step's gradient summed over micro-batches is bitwise the one that a
/// data-parallel all-reduce forms from the replicas' whole sums.
void bias_grad_rows(const float* dy, float* db, std::int64_t rows, std::int64_t cols,
                    bool accumulate);

void relu_forward(const float* x, float* y, std::int64_t n);
/// dx = dy * (y > 0); dx may alias dy.
void relu_backward(const float* y, const float* dy, float* dx, std::int64_t n);
void gelu_forward(const float* x, float* y, std::int64_t n);
/// dx = dy * gelu'(x); dx may alias dy.
void gelu_backward(const float* x, const float* dy, float* dx, std::int64_t n);

/// y[i] = x[i] * scale.
void scale(const float* x, float* y, float s, std::int64_t n);
/// Gradient accumulation's one rule: out = sum when the call starts the sum
/// (accumulate=false), else out[i] += sum[i], the call's contribution added
/// as one whole term, never sample by sample. Every kernel that accumulates a
/// parameter gradient over micro-batches goes through it (BLAS GEMMs with
/// beta = 1 add their product the same way).
void accumulate_whole(float* out, const float* sum, std::int64_t n, bool accumulate);
/// y[i] += x[i].
void add_inplace(float* y, const float* x, std::int64_t n);
/// sum of squares in double (gradient-norm clipping).
double sum_squares(const float* x, std::int64_t n);
/// u8 -> f32 with y = x * s (input normalisation, x/255).
void u8_to_f32(const std::uint8_t* x, float* y, float s, std::int64_t n);

} // namespace troupe::kernels::cpu
