#define BOOST_TEST_MODULE kernels_dropout
#define BOOST_TEST_DYN_LINK
#include <boost/test/unit_test.hpp>

#include <cmath>

#include "kernels/cpu/dropout.hpp"
#include "runtime/rng.hpp"
#include "test_util.hpp"

using namespace troupe::kernels::cpu;
using namespace troupe::kernels::test;

BOOST_AUTO_TEST_CASE(mask_follows_the_counter_based_stream) {
  const std::int64_t rows = 7, cols = 33, first_row = 5;
  const float p = 0.3f;
  const std::uint64_t seed = 42, key = troupe::runtime::hash_name("dropout.1");
  auto x = random_vector(static_cast<std::size_t>(rows * cols));
  std::vector<float> y(x.size());
  std::vector<std::uint8_t> mask(x.size());
  dropout_forward(x.data(), y.data(), mask.data(), rows, cols, p, seed, key, first_row);
  const troupe::runtime::rng_stream s(seed, key);
  std::vector<double> want(x.size());
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < cols; ++c) {
      const std::int64_t i = r * cols + c;
      const bool keep = s.uniform_at(static_cast<std::uint64_t>((first_row + r) * cols + c)) >= p;
      BOOST_TEST(mask[i] == (keep ? 1 : 0));
      want[i] = keep ? x[i] / (1.0 - p) : 0.0;
    }
  check_close(y, want, 1e-7, 1e-6, "dropout y");
}

BOOST_AUTO_TEST_CASE(mask_does_not_depend_on_the_batch_split) {
  const std::int64_t rows = 10, cols = 7;
  auto x = random_vector(static_cast<std::size_t>(rows * cols));
  std::vector<float> whole(x.size()), split(x.size());
  std::vector<std::uint8_t> m1(x.size()), m2(x.size());
  dropout_forward(x.data(), whole.data(), m1.data(), rows, cols, 0.5f, 1, 2, 100);
  dropout_forward(x.data(), split.data(), m2.data(), 3, cols, 0.5f, 1, 2, 100);
  dropout_forward(x.data() + 3 * cols, split.data() + 3 * cols, m2.data() + 3 * cols, 7, cols, 0.5f,
                  1, 2, 103);
  BOOST_TEST(whole == split, boost::test_tools::per_element());
  BOOST_TEST(m1 == m2, boost::test_tools::per_element());
  // A different key gives a different mask.
  dropout_forward(x.data(), split.data(), m2.data(), rows, cols, 0.5f, 1, 3, 100);
  BOOST_TEST(m1 != m2);
}

BOOST_AUTO_TEST_CASE(keep_rate_and_edge_probabilities) {
  const std::int64_t n = 100000;
  std::vector<float> x(n, 1.f), y(n);
  std::vector<std::uint8_t> mask(n);
  dropout_forward(x.data(), y.data(), mask.data(), 1, n, 0.25f, 9, 9, 0);
  double kept = 0, mean = 0;
  for (std::int64_t i = 0; i < n; ++i)
    kept += mask[i], mean += y[i];
  BOOST_TEST(std::abs(kept / n - 0.75) < 0.01);
  BOOST_TEST(std::abs(mean / n - 1.0) < 0.015); // inverted dropout keeps the expectation
  dropout_forward(x.data(), y.data(), mask.data(), 1, n, 0.f, 9, 9, 0);
  for (std::int64_t i = 0; i < n; ++i)
    BOOST_REQUIRE(mask[i] == 1 && y[i] == 1.f);
  dropout_forward(x.data(), y.data(), mask.data(), 1, n, 1.f, 9, 9, 0);
  for (std::int64_t i = 0; i < n; ++i)
    BOOST_REQUIRE(mask[i] == 0 && y[i] == 0.f);
  BOOST_CHECK_THROW(dropout_forward(x.data(), y.data(), mask.data(), 1, n, 1.5f, 9, 9, 0),
                    std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(backward_scales_kept_and_zeroes_dropped) {
  for (std::int64_t n : {1, 3, 7, 33, 127}) {
    auto dy = random_vector(static_cast<std::size_t>(n));
    std::vector<std::uint8_t> mask(n);
    for (std::int64_t i = 0; i < n; ++i)
      mask[i] = static_cast<std::uint8_t>(random_int(0, 1));
    std::vector<double> want(n);
    for (std::int64_t i = 0; i < n; ++i)
      want[i] = mask[i] ? dy[i] / (1 - 0.2) : 0.0;
    std::vector<float> dx(n);
    dropout_backward(dy.data(), mask.data(), dx.data(), n, 0.2f);
    check_close(dx, want, 1e-7, 1e-6, "dropout_backward");
    dropout_backward(dy.data(), mask.data(), dy.data(), n, 0.2f); // aliased
    check_close(dy, want, 1e-7, 1e-6, "dropout_backward aliased");
  }
}
