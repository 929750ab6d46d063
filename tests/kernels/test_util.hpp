#pragma once

// Shared helpers for the kernel tests: deterministic random data and
// element-wise comparison against double-precision references.

#include <boost/test/unit_test.hpp>

#include <cmath>
#include <cstdint>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace troupe::kernels::test {

inline std::mt19937_64& rng() {
  static std::mt19937_64 gen(20240607);
  return gen;
}

inline std::vector<float> random_vector(std::size_t n, float lo = -1.f, float hi = 1.f) {
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v)
    x = d(rng());
  return v;
}

inline std::int64_t random_int(std::int64_t lo, std::int64_t hi) {
  return std::uniform_int_distribution<std::int64_t>(lo, hi)(rng());
}

/// Checks |got - want| <= atol + rtol * |want| element-wise; reports the first
/// few failures with their index.
template <class Got, class Want>
void check_close(const Got& got, const Want& want, double atol, double rtol,
                 const std::string& what) {
  BOOST_REQUIRE_EQUAL(got.size(), want.size());
  int failures = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double g = static_cast<double>(got[i]);
    const double w = static_cast<double>(want[i]);
    if (!(std::abs(g - w) <= atol + rtol * std::abs(w))) {
      if (++failures <= 5) {
        std::ostringstream os;
        os << what << ": index " << i << " got " << g << " want " << w;
        BOOST_ERROR(os.str());
      }
    }
  }
  if (failures > 5)
    BOOST_ERROR(what << ": " << failures << " mismatches in total");
}

} // namespace troupe::kernels::test
