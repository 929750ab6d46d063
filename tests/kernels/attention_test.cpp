#define BOOST_TEST_MODULE kernels_attention
#define BOOST_TEST_DYN_LINK
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <limits>

#include "kernels/cpu/attention.hpp"
#include "test_util.hpp"

using namespace troupe::kernels::cpu;
using namespace troupe::kernels::test;

namespace {
// Softmax in double over the visible prefix; masked entries are 0.
std::vector<double> ref_softmax(const std::vector<float>& x, std::int64_t rows, std::int64_t cols,
                                bool causal) {
  std::vector<double> y(x.size(), 0.0);
  for (std::int64_t r = 0; r < rows; ++r) {
    const std::int64_t vis = causal ? r % cols + 1 : cols;
    double mx = -std::numeric_limits<double>::infinity(), s = 0;
    for (std::int64_t c = 0; c < vis; ++c)
      mx = std::max(mx, double(x[r * cols + c]));
    for (std::int64_t c = 0; c < vis; ++c)
      s += std::exp(x[r * cols + c] - mx);
    for (std::int64_t c = 0; c < vis; ++c)
      y[r * cols + c] = std::exp(x[r * cols + c] - mx) / s;
  }
  return y;
}
} // namespace

BOOST_AUTO_TEST_CASE(softmax_rows_plain_and_causal) {
  for (bool causal : {false, true})
    for (std::int64_t t : {1, 3, 7, 33}) {
      const std::int64_t rows = 3 * t; // three [t x t] blocks (batch x heads)
      auto x = random_vector(static_cast<std::size_t>(rows * t), -8.f, 8.f);
      auto want = ref_softmax(x, rows, t, causal);
      softmax_rows(x.data(), rows, t, causal);
      check_close(x, want, 1e-6, 1e-5, causal ? "causal softmax" : "softmax");
    }
  // Non-square rows without a mask, and huge scores.
  auto x = random_vector(5 * 127, -1e4f, 1e4f);
  auto want = ref_softmax(x, 5, 127, false);
  softmax_rows(x.data(), 5, 127, false);
  check_close(x, want, 1e-6, 1e-5, "softmax huge scores");
}

BOOST_AUTO_TEST_CASE(softmax_backward_matches_reference) {
  for (bool causal : {false, true})
    for (std::int64_t t : {1, 3, 7, 33}) {
      const std::int64_t rows = 2 * t;
      auto y = random_vector(static_cast<std::size_t>(rows * t), -3.f, 3.f);
      softmax_rows(y.data(), rows, t, causal);
      auto dy = random_vector(y.size());
      std::vector<double> want(y.size());
      for (std::int64_t r = 0; r < rows; ++r) {
        double dot = 0;
        for (std::int64_t c = 0; c < t; ++c)
          dot += double(dy[r * t + c]) * y[r * t + c];
        for (std::int64_t c = 0; c < t; ++c)
          want[r * t + c] = double(y[r * t + c]) * (dy[r * t + c] - dot);
      }
      std::vector<float> dx(y.size());
      softmax_rows_backward(y.data(), dy.data(), dx.data(), rows, t);
      check_close(dx, want, 1e-6, 1e-5, "softmax backward");
      if (causal) // masked positions (c > r % t) get exactly 0
        for (std::int64_t r = 0; r < rows; ++r)
          for (std::int64_t c = r % t + 1; c < t; ++c)
            BOOST_REQUIRE(dx[r * t + c] == 0.f);
      softmax_rows_backward(y.data(), dy.data(), dy.data(), rows, t); // dx aliases dy
      check_close(dy, want, 1e-6, 1e-5, "softmax backward aliased");
    }
}
