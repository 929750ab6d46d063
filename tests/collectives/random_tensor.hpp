#pragma once

// Inputs for the collectives tests whose summation order must show.

#include <cmath>
#include <cstdint>
#include <random>

#include "runtime/tensor.hpp"

namespace troupe::test {

/// Values of very different magnitudes, so that the summation order shows in
/// the last bits.
inline runtime::tensor random_tensor(std::int64_t n, std::uint32_t seed) {
  std::mt19937 gen{seed};
  std::uniform_real_distribution<float> u{-1.f, 1.f};
  std::uniform_int_distribution<int> e{-4, 4};
  auto t = runtime::tensor::empty(runtime::dtype::f32, {n});
  auto* p = t.mutable_data<float>();
  for (std::int64_t i = 0; i < n; ++i)
    p[i] = std::ldexp(u(gen), e(gen));
  return t;
}

} // namespace troupe::test
