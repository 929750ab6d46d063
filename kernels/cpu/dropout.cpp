#include "kernels/cpu/dropout.hpp"

#include <stdexcept>

#include "runtime/rng.hpp"

namespace troupe::kernels::cpu {
namespace {
// p == 1 drops everything; avoid 1/0 (the mask is all zero then anyway).
float keep_scale(float p) {
  return p < 1.f ? 1.f / (1.f - p) : 0.f;
}
} // namespace

void dropout_forward(const float* x, float* y, std::uint8_t* mask, std::int64_t rows,
                     std::int64_t cols, float p, std::uint64_t seed, std::uint64_t key,
                     std::int64_t first_row) {
  if (!(p >= 0.f && p <= 1.f))
    throw std::invalid_argument("dropout: p outside [0, 1]");
  const runtime::rng_stream stream(seed, key);
  const float s = keep_scale(p);
  const float* __restrict in = x;
  float* __restrict out = y;
  std::uint8_t* __restrict m = mask;
  for (std::int64_t r = 0; r < rows; ++r) {
    const auto base = static_cast<std::uint64_t>(first_row + r) * static_cast<std::uint64_t>(cols);
    const std::int64_t o = r * cols;
    // Counter-based: element (global row, c) draws uniform number base + c,
    // whatever the split of the batch.
    for (std::int64_t c = 0; c < cols; ++c) {
      const bool keep = stream.uniform_at(base + static_cast<std::uint64_t>(c)) >= p;
      m[o + c] = keep ? 1 : 0;
      out[o + c] = keep ? in[o + c] * s : 0.f;
    }
  }
}

void dropout_backward(const float* dy, const std::uint8_t* mask, float* dx, std::int64_t n,
                      float p) {
  const float s = keep_scale(p);
  // dx may alias dy (element i is read before written).
  for (std::int64_t i = 0; i < n; ++i)
    dx[i] = mask[i] != 0 ? dy[i] * s : 0.f;
}

} // namespace troupe::kernels::cpu
