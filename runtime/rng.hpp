#pragma once

#include <cmath>
#include <cstdint>
#include <string_view>

namespace troupe::runtime {

/// splitmix64's finaliser: a bijective 64-bit mix.
constexpr std::uint64_t mix64(std::uint64_t x) noexcept {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

/// FNV-1a, for turning names (parameter names, purposes) into stream keys.
constexpr std::uint64_t hash_name(std::string_view s) noexcept {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (char c : s) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ULL;
  }
  return h;
}

/// A counter-based random stream: value i of stream (seed, key) depends only on
/// (seed, key, i). Whoever computes it, in whatever order, gets the same
/// numbers, so initialisation, dropout masks and shuffles do not depend on how
/// a topology splits the work, and the whole state is (seed, key, counter).
class rng_stream {
public:
  constexpr rng_stream(std::uint64_t seed, std::uint64_t key, std::uint64_t counter = 0) noexcept
    : base_(mix64(seed ^ mix64(key))), counter_(counter) {}

  constexpr std::uint64_t at(std::uint64_t i) const noexcept { return mix64(base_ + mix64(i)); }
  constexpr std::uint64_t next_u64() noexcept { return at(counter_++); }
  /// Uniform in [0, 1) with 24 random bits (exact in float).
  constexpr float uniform_at(std::uint64_t i) const noexcept {
    return static_cast<float>(at(i) >> 40) * (1.0f / 16777216.0f);
  }
  constexpr float next_uniform() noexcept { return uniform_at(counter_++); }
  /// Uniform in [lo, hi).
  constexpr float next_uniform(float lo, float hi) noexcept { return lo + (hi - lo) * next_uniform(); }
  /// Uniform integer in [0, n), n > 0 (Lemire's multiply-shift; bias < 2^-32 for n < 2^32).
  constexpr std::uint64_t next_below(std::uint64_t n) noexcept {
    return static_cast<std::uint64_t>((static_cast<unsigned __int128>(next_u64()) * n) >> 64);
  }
  /// Standard normal (Box-Muller, one value per two uniforms).
  float next_normal() noexcept {
    double u1 = (static_cast<double>(next_u64() >> 11) + 1.0) * (1.0 / 9007199254740993.0);
    double u2 = static_cast<double>(next_u64() >> 11) * (1.0 / 9007199254740992.0);
    return static_cast<float>(std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
  }
  constexpr std::uint64_t counter() const noexcept { return counter_; }

private:
  std::uint64_t base_;
  std::uint64_t counter_;
};

} // namespace troupe::runtime
