#define BOOST_TEST_MODULE kernels_elementwise
#define BOOST_TEST_DYN_LINK
#include <boost/test/unit_test.hpp>

#include <cmath>

#include "kernels/cpu/elementwise.hpp"
#include "test_util.hpp"

using namespace troupe::kernels::cpu;
using namespace troupe::kernels::test;

namespace {
const std::int64_t kSizes[] = {1, 3, 7, 33, 127, 1000};

double ref_gelu(double x) {
  return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0)));
}
} // namespace

BOOST_AUTO_TEST_CASE(bias_rows_forward_and_grad) {
  for (std::int64_t rows : {1, 3, 64})
    for (std::int64_t cols : kSizes) {
      auto y = random_vector(static_cast<std::size_t>(rows * cols));
      auto bias = random_vector(static_cast<std::size_t>(cols));
      std::vector<double> want(y.size()), want_relu(y.size());
      for (std::int64_t r = 0; r < rows; ++r)
        for (std::int64_t c = 0; c < cols; ++c) {
          double v = double(y[r * cols + c]) + bias[c];
          want[r * cols + c] = v;
          want_relu[r * cols + c] = v > 0 ? v : 0;
        }
      auto y2 = y;
      add_bias_rows(y.data(), bias.data(), rows, cols);
      check_close(y, want, 1e-6, 1e-6, "add_bias_rows");
      add_bias_relu_rows(y2.data(), bias.data(), rows, cols);
      check_close(y2, want_relu, 1e-6, 1e-6, "add_bias_relu_rows");

      auto dy = random_vector(static_cast<std::size_t>(rows * cols));
      std::vector<double> colsum(cols, 0.0);
      for (std::int64_t r = 0; r < rows; ++r)
        for (std::int64_t c = 0; c < cols; ++c)
          colsum[c] += dy[r * cols + c];
      std::vector<float> db(cols, 123.f);
      bias_grad_rows(dy.data(), db.data(), rows, cols, false);
      check_close(db, colsum, 1e-5, 1e-5, "bias_grad_rows overwrite");
      auto prior = random_vector(static_cast<std::size_t>(cols));
      db = prior;
      std::vector<double> acc(cols);
      for (std::int64_t c = 0; c < cols; ++c)
        acc[c] = prior[c] + colsum[c];
      bias_grad_rows(dy.data(), db.data(), rows, cols, true);
      check_close(db, acc, 1e-5, 1e-5, "bias_grad_rows accumulate");
    }
}

BOOST_AUTO_TEST_CASE(relu_forward_backward_with_alias) {
  for (std::int64_t n : kSizes) {
    auto x = random_vector(static_cast<std::size_t>(n));
    std::vector<float> y(n);
    relu_forward(x.data(), y.data(), n);
    std::vector<double> want(n), want_dx(n);
    auto dy = random_vector(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) {
      want[i] = x[i] > 0 ? x[i] : 0;
      want_dx[i] = x[i] > 0 ? dy[i] : 0;
    }
    check_close(y, want, 0, 0, "relu_forward");
    std::vector<float> dx(n);
    relu_backward(y.data(), dy.data(), dx.data(), n);
    check_close(dx, want_dx, 0, 0, "relu_backward");
    relu_backward(y.data(), dy.data(), dy.data(), n); // dx aliases dy
    check_close(dy, want_dx, 0, 0, "relu_backward aliased");
  }
}

BOOST_AUTO_TEST_CASE(gelu_forward_backward) {
  for (std::int64_t n : kSizes) {
    auto x = random_vector(static_cast<std::size_t>(n), -5.f, 5.f);
    std::vector<float> y(n), dx(n);
    gelu_forward(x.data(), y.data(), n);
    auto dy = random_vector(static_cast<std::size_t>(n));
    std::vector<double> want(n), want_dx(n);
    for (std::int64_t i = 0; i < n; ++i) {
      want[i] = ref_gelu(x[i]);
      // Central difference of the double reference: independent of the
      // analytic formula in math.hpp.
      const double h = 1e-5;
      want_dx[i] = dy[i] * (ref_gelu(x[i] + h) - ref_gelu(x[i] - h)) / (2 * h);
    }
    check_close(y, want, 1e-6, 1e-5, "gelu_forward");
    gelu_backward(x.data(), dy.data(), dx.data(), n);
    check_close(dx, want_dx, 1e-5, 1e-4, "gelu_backward");
    gelu_backward(x.data(), dy.data(), dy.data(), n);
    check_close(dy, want_dx, 1e-5, 1e-4, "gelu_backward aliased");
  }
}

BOOST_AUTO_TEST_CASE(scale_add_sum_squares_u8) {
  for (std::int64_t n : {1, 3, 7, 33, 127, 100003}) {
    auto x = random_vector(static_cast<std::size_t>(n));
    auto y = random_vector(static_cast<std::size_t>(n));
    std::vector<double> want_scale(n), want_add(n);
    double ss = 0;
    for (std::int64_t i = 0; i < n; ++i) {
      want_scale[i] = double(x[i]) * 0.37f;
      want_add[i] = double(y[i]) + x[i];
      ss += double(x[i]) * x[i];
    }
    std::vector<float> s(n);
    scale(x.data(), s.data(), 0.37f, n);
    check_close(s, want_scale, 1e-7, 1e-6, "scale");
    auto inplace = x;
    scale(inplace.data(), inplace.data(), 0.37f, n);
    check_close(inplace, want_scale, 1e-7, 1e-6, "scale in place");
    add_inplace(y.data(), x.data(), n);
    check_close(y, want_add, 1e-6, 1e-6, "add_inplace");
    BOOST_TEST(std::abs(sum_squares(x.data(), n) - ss) <= 1e-12 * ss + 1e-12);
  }
  BOOST_TEST(sum_squares(nullptr, 0) == 0.0);

  std::vector<std::uint8_t> u(259);
  for (std::size_t i = 0; i < u.size(); ++i)
    u[i] = static_cast<std::uint8_t>(i * 7);
  std::vector<float> f(u.size());
  u8_to_f32(u.data(), f.data(), 1.f / 255.f, static_cast<std::int64_t>(u.size()));
  std::vector<double> want(u.size());
  for (std::size_t i = 0; i < u.size(); ++i)
    want[i] = u[i] / 255.0;
  check_close(f, want, 1e-7, 1e-6, "u8_to_f32");
}
