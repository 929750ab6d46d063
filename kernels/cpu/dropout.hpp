#pragma once

#include <cstdint>

namespace troupe::kernels::cpu {

/// Inverted dropout over `rows` rows of `cols`: element (r, c) is kept when the
/// counter-based uniform of (seed, key, (first_row + r) * cols + c) is >= p, and
/// scaled by 1/(1-p). Keying by the global row (sample) index makes the mask
/// independent of how the batch is split across replicas or micro-batches.
/// mask (rows*cols bytes, 1 = kept) is saved for backward.
void dropout_forward(const float* x, float* y, std::uint8_t* mask, std::int64_t rows,
                     std::int64_t cols, float p, std::uint64_t seed, std::uint64_t key,
                     std::int64_t first_row);
void dropout_backward(const float* dy, const std::uint8_t* mask, float* dx, std::int64_t n, float p);

} // namespace troupe::kernels::cpu
