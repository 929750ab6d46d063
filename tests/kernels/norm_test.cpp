#define BOOST_TEST_MODULE kernels_norm
#define BOOST_TEST_DYN_LINK
#include <boost/test/unit_test.hpp>

#include <cmath>

#include "kernels/cpu/norm.hpp"
#include "test_util.hpp"

using namespace troupe::kernels::cpu;
using namespace troupe::kernels::test;

namespace {

// LayerNorm of one row in double (biased variance, PyTorch semantics).
std::vector<double> ref_row(const double* x, const float* gamma, const float* beta,
                            std::int64_t cols, double eps, double* mean_out = nullptr,
                            double* rstd_out = nullptr) {
  double mu = 0;
  for (std::int64_t c = 0; c < cols; ++c)
    mu += x[c];
  mu /= cols;
  double var = 0;
  for (std::int64_t c = 0; c < cols; ++c)
    var += (x[c] - mu) * (x[c] - mu);
  var /= cols;
  const double rs = 1 / std::sqrt(var + eps);
  if (mean_out)
    *mean_out = mu;
  if (rstd_out)
    *rstd_out = rs;
  std::vector<double> y(cols);
  for (std::int64_t c = 0; c < cols; ++c)
    y[c] = (x[c] - mu) * rs * gamma[c] + beta[c];
  return y;
}

} // namespace

BOOST_AUTO_TEST_CASE(layernorm_forward_matches_reference) {
  const float eps = 1e-5f;
  for (std::int64_t rows : {1, 3, 17})
    for (std::int64_t cols : {1, 3, 7, 33, 127}) {
      // An offset mean checks that the statistics stay accurate.
      auto x = random_vector(static_cast<std::size_t>(rows * cols), 99.f, 101.f);
      auto gamma = random_vector(cols, 0.5f, 1.5f), beta = random_vector(cols);
      std::vector<float> y(x.size()), mean(rows), rstd(rows);
      layernorm_forward(x.data(), gamma.data(), beta.data(), rows, cols, eps, y.data(), mean.data(),
                        rstd.data());
      std::vector<double> y_ref, mean_ref(rows), rstd_ref(rows);
      for (std::int64_t r = 0; r < rows; ++r) {
        std::vector<double> xr(x.begin() + r * cols, x.begin() + (r + 1) * cols);
        auto yr =
            ref_row(xr.data(), gamma.data(), beta.data(), cols, eps, &mean_ref[r], &rstd_ref[r]);
        y_ref.insert(y_ref.end(), yr.begin(), yr.end());
      }
      check_close(y, y_ref, 2e-4, 1e-4, "layernorm y");
      check_close(mean, mean_ref, 1e-5, 1e-6, "layernorm mean");
      check_close(rstd, rstd_ref, 1e-4, 1e-4, "layernorm rstd");
    }
}

BOOST_AUTO_TEST_CASE(layernorm_backward_matches_finite_differences) {
  const float eps = 1e-5f;
  for (bool accumulate : {false, true})
    for (std::int64_t cols : {1, 3, 7, 33}) {
      const std::int64_t rows = 3;
      auto x = random_vector(static_cast<std::size_t>(rows * cols), -2.f, 2.f);
      auto gamma = random_vector(cols, 0.5f, 1.5f), beta = random_vector(cols);
      auto dy = random_vector(x.size());
      std::vector<float> y(x.size()), mean(rows), rstd(rows);
      layernorm_forward(x.data(), gamma.data(), beta.data(), rows, cols, eps, y.data(), mean.data(),
                        rstd.data());
      // L = sum(dy * y): numerical gradients of the double reference.
      std::vector<double> dx_ref(x.size()), dg_ref(cols, 0.0), db_ref(cols, 0.0);
      auto dg = random_vector(cols), db = random_vector(cols);
      if (accumulate)
        for (std::int64_t c = 0; c < cols; ++c)
          dg_ref[c] = dg[c], db_ref[c] = db[c];
      const double h = 1e-4;
      for (std::int64_t r = 0; r < rows; ++r) {
        std::vector<double> xr(x.begin() + r * cols, x.begin() + (r + 1) * cols);
        auto loss = [&](const std::vector<double>& xx) {
          auto yy = ref_row(xx.data(), gamma.data(), beta.data(), cols, eps);
          double s = 0;
          for (std::int64_t c = 0; c < cols; ++c)
            s += yy[c] * dy[r * cols + c];
          return s;
        };
        for (std::int64_t c = 0; c < cols; ++c) {
          auto xp = xr, xm = xr;
          xp[c] += h, xm[c] -= h;
          dx_ref[r * cols + c] = (loss(xp) - loss(xm)) / (2 * h);
        }
        double mu, rs;
        ref_row(xr.data(), gamma.data(), beta.data(), cols, eps, &mu, &rs);
        for (std::int64_t c = 0; c < cols; ++c) {
          dg_ref[c] += dy[r * cols + c] * (xr[c] - mu) * rs;
          db_ref[c] += dy[r * cols + c];
        }
      }
      std::vector<float> dx(x.size(), 77.f);
      layernorm_backward(x.data(), gamma.data(), dy.data(), mean.data(), rstd.data(), rows, cols,
                         dx.data(), dg.data(), db.data(), accumulate);
      check_close(dx, dx_ref, 1e-3, 1e-3, "layernorm dx");
      check_close(dg, dg_ref, 1e-5, 1e-4, "layernorm dgamma");
      check_close(db, db_ref, 1e-5, 1e-5, "layernorm dbeta");
    }
}
