#pragma once

// Central finite-difference gradient checks shared by the models and lm test
// suites. The method and its float32 tolerance are explained at the top of
// tests/models/gradcheck_test.cpp.

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>

#include <boost/test/unit_test.hpp>

#include "models/layers/layer.hpp"
#include "test_util.hpp"

namespace troupe::models::test {

inline constexpr double fd_eps = 1e-2;
inline constexpr double rel_tol = 1e-2;
inline constexpr double abs_floor = 5e-2;

struct check_stats {
  double max_err = 0;
  std::int64_t checked = 0;
};

/// Compares one analytic gradient against central differences of `f` when
/// element i of `data` is perturbed.
inline check_stats compare(const std::string& what, float* data, const float* analytic,
                           std::int64_t n, const std::function<double()>& f) {
  check_stats s;
  for (std::int64_t i = 0; i < n; ++i) {
    const float orig = data[i];
    data[i] = static_cast<float>(orig + fd_eps);
    const double fp = f();
    data[i] = static_cast<float>(orig - fd_eps);
    const double fm = f();
    data[i] = orig;
    // Divide by the perturbation actually applied (float rounding of orig +- eps).
    const double h =
        double(static_cast<float>(orig + fd_eps)) - double(static_cast<float>(orig - fd_eps));
    const double num = (fp - fm) / h;
    const double ana = analytic[i];
    const double err = std::abs(num - ana) / std::max({std::abs(num), std::abs(ana), abs_floor});
    if (err >= rel_tol)
      BOOST_ERROR(what << "[" << i << "]: numeric " << num << " analytic " << ana);
    s.max_err = std::max(s.max_err, err);
    ++s.checked;
  }
  BOOST_TEST_MESSAGE(what << ": " << s.checked << " elements, max error " << s.max_err);
  return s;
}

/// Checks d(sum(r * layer(x)))/dx and /dp for every parameter p.
/// `saves_data` is false for layers that keep only shapes (flatten).
inline void check_layer(layer& l, const tensor& x_in, const forward_context& ctx,
                        bool saves_data = true, std::uint64_t r_key = 99) {
  tensor x = x_in.clone();
  for (auto& p : l.parameters())
    p.grad_fresh = true;
  tensor y = l.forward(x, ctx);
  BOOST_TEST((l.saved_bytes() > 0u) == saves_data);
  tensor r = random_tensor(y.shape(), r_key);
  tensor dx = l.backward(r, ctx.mb, true);
  BOOST_TEST(l.saved_bytes() == 0u);
  for (auto& p : l.parameters())
    BOOST_TEST(!p.grad_fresh);

  auto objective = [&] {
    tensor out = l.forward(x, ctx);
    l.clear_saved();
    return dot(r, out);
  };
  BOOST_REQUIRE(dx.defined());
  BOOST_REQUIRE(dx.shape() == x.shape());
  compare(l.kind() + " dx", x.mutable_data<float>(), dx.data<float>(), x.numel(), objective);
  for (auto& p : l.parameters()) {
    tensor g = p.grad.clone();
    compare(p.name, p.value.mutable_data<float>(), g.data<float>(), p.value.numel(), objective);
  }
}

} // namespace troupe::models::test
