#pragma once

#include <cstdint>

namespace troupe::kernels::cpu {

/// y[r, c] += bias[c] for a rows x cols row-major matrix.
void add_bias_rows(float* y, const float* bias, std::int64_t rows, std::int64_t cols);
/// Fused bias + ReLU in place: y = max(y + bias, 0).
void add_bias_relu_rows(float* y, const float* bias, std::int64_t rows, std::int64_t cols);
/// db[c] (+)= sum_r dy[r, c]; accumulate=false overwrites db. The call's sum
/// is formed whole and then added to db as one term (add_inplace), so a
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
/// y[i] += x[i]. Also gradient accumulation's one rule: a kernel that adds a
/// micro-batch's parameter gradient to the step's running sum forms the
/// micro-batch's sum first and adds it with this, as one whole term, never
/// sample by sample (BLAS GEMMs with beta = 1 add their product the same
/// way, and so do the all-reduce and the parameter servers).
void add_inplace(float* y, const float* x, std::int64_t n);
/// sum of squares in double (gradient-norm clipping).
double sum_squares(const float* x, std::int64_t n);
/// u8 -> f32 with y = x * s (input normalisation, x/255).
void u8_to_f32(const std::uint8_t* x, float* y, float s, std::int64_t n);

} // namespace troupe::kernels::cpu
