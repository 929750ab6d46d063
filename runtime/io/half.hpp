#pragma once

#include <bit>
#include <cstdint>

namespace troupe::runtime {

/// IEEE 754 binary16 bits to float, exactly (every half is a float): the tensor
/// types have no f16, so half-precision arrays (.npy '<f2', safetensors F16) are
/// widened to f32 when read.
inline float half_to_float(std::uint16_t h) noexcept {
  const std::uint32_t sign = std::uint32_t{h & 0x8000u} << 16;
  std::int32_t exp = (h >> 10) & 0x1f;
  std::uint32_t mant = h & 0x3ffu;
  if (exp == 0x1f) // inf or NaN: keep the payload
    return std::bit_cast<float>(sign | 0x7f800000u | (mant << 13));
  if (exp == 0) {
    if (mant == 0)
      return std::bit_cast<float>(sign);
    // Subnormal half: normalise it (a float holds it as a normal number).
    exp = 1;
    while ((mant & 0x400u) == 0) {
      mant <<= 1;
      --exp;
    }
    mant &= 0x3ffu;
  }
  return std::bit_cast<float>(sign | (static_cast<std::uint32_t>(exp + 127 - 15) << 23) |
                              (mant << 13));
}

/// bfloat16 bits (the top half of a float) to float, exactly.
inline float bfloat16_to_float(std::uint16_t b) noexcept {
  return std::bit_cast<float>(std::uint32_t{b} << 16);
}

} // namespace troupe::runtime
