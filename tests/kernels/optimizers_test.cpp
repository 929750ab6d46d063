#define BOOST_TEST_MODULE kernels_optimizers
#define BOOST_TEST_DYN_LINK
#include <boost/test/unit_test.hpp>

#include <cmath>

#include "kernels/cpu/optimizers.hpp"
#include "test_util.hpp"

using namespace troupe::kernels::cpu;
using namespace troupe::kernels::test;

// References written from the update rules in PyTorch's documentation
// (torch.optim.SGD / Adam / AdamW, maximize=False, amsgrad=False), in double.

namespace {

struct ref_sgd {
  std::vector<double> p, buf;
  double lr, momentum, wd, dampening = 0.0;
  int t = 0;
  void step(const std::vector<float>& g) {
    ++t;
    for (std::size_t i = 0; i < p.size(); ++i) {
      double d = g[i];
      if (wd != 0)
        d += wd * p[i];
      if (momentum != 0) {
        buf[i] = t == 1 ? d : momentum * buf[i] + (1 - dampening) * d;
        d = buf[i];
      }
      p[i] -= lr * d;
    }
  }
};

struct ref_adam {
  std::vector<double> p, m, v;
  double lr, b1, b2, eps, wd;
  bool adamw;
  int t = 0;
  void step(const std::vector<float>& grad) {
    ++t;
    for (std::size_t i = 0; i < p.size(); ++i) {
      double g = grad[i];
      if (adamw)
        p[i] = p[i] * (1 - lr * wd); // decoupled: theta <- theta - gamma*lambda*theta
      else if (wd != 0)
        g = g + wd * p[i]; // L2: g <- g + lambda*theta
      m[i] = b1 * m[i] + (1 - b1) * g;
      v[i] = b2 * v[i] + (1 - b2) * g * g;
      const double mhat = m[i] / (1 - std::pow(b1, t));
      const double vhat = v[i] / (1 - std::pow(b2, t));
      p[i] -= lr * mhat / (std::sqrt(vhat) + eps);
    }
  }
};

std::vector<double> to_double(const std::vector<float>& v) {
  return {v.begin(), v.end()};
}

} // namespace

BOOST_AUTO_TEST_CASE(sgd_matches_reference_over_steps) {
  struct cfg {
    float lr, momentum, wd;
  };
  for (cfg c :
       {cfg{0.1f, 0.f, 0.f}, cfg{0.05f, 0.9f, 0.f}, cfg{0.01f, 0.9f, 1e-2f}, cfg{0.2f, 0.f, 5e-4f}})
    for (std::int64_t n : {1, 7, 33, 1027}) {
      auto p = random_vector(static_cast<std::size_t>(n));
      std::vector<float> buf(n, 0.f);
      ref_sgd ref{to_double(p), std::vector<double>(n, 0.0), c.lr, c.momentum, c.wd};
      sgd_options o{c.lr, c.momentum, c.wd};
      for (int step = 1; step <= 6; ++step) {
        auto g = random_vector(static_cast<std::size_t>(n));
        ref.step(g);
        sgd_update(p.data(), g.data(), c.momentum != 0.f ? buf.data() : nullptr, n, o, step == 1);
      }
      check_close(p, ref.p, 1e-5, 1e-5, "sgd params");
      if (c.momentum != 0.f)
        check_close(buf, ref.buf, 1e-5, 1e-5, "sgd momentum buffer");
    }
}

BOOST_AUTO_TEST_CASE(sgd_momentum_without_buffer_throws) {
  std::vector<float> p(3), g(3);
  BOOST_CHECK_THROW(sgd_update(p.data(), g.data(), nullptr, 3, sgd_options{0.1f, 0.9f, 0.f}, true),
                    std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(adam_and_adamw_match_reference_over_steps) {
  for (bool adamw : {false, true})
    for (float wd : {0.f, 0.01f, 0.1f})
      for (std::int64_t n : {1, 3, 33, 1001}) {
        adam_options o;
        o.lr = 1e-2f;
        o.weight_decay = wd;
        o.decoupled = adamw;
        auto p = random_vector(static_cast<std::size_t>(n));
        std::vector<float> m(n, 0.f), v(n, 0.f);
        ref_adam ref{to_double(p),
                     std::vector<double>(n, 0.0),
                     std::vector<double>(n, 0.0),
                     o.lr,
                     o.beta1,
                     o.beta2,
                     o.eps,
                     wd,
                     adamw};
        for (int step = 1; step <= 8; ++step) {
          auto g = random_vector(static_cast<std::size_t>(n));
          ref.step(g);
          adam_update(p.data(), g.data(), m.data(), v.data(), n, o, step);
        }
        std::ostringstream what;
        what << (adamw ? "adamw" : "adam") << " wd=" << wd << " n=" << n;
        check_close(p, ref.p, 2e-6, 1e-5, what.str() + " params");
        check_close(m, ref.m, 1e-6, 1e-5, what.str() + " m");
        check_close(v, ref.v, 1e-8, 1e-5, what.str() + " v");
      }
}

BOOST_AUTO_TEST_CASE(adam_first_step_moves_by_lr) {
  // With bias correction, step 1 moves every parameter by ~lr * sign(g).
  const std::int64_t n = 100;
  auto p = random_vector(n), g = random_vector(n, 0.1f, 1.f);
  for (std::int64_t i = 0; i < n; i += 2)
    g[i] = -g[i];
  auto p0 = p;
  std::vector<float> m(n, 0.f), v(n, 0.f);
  adam_options o;
  o.lr = 1e-3f;
  adam_update(p.data(), g.data(), m.data(), v.data(), n, o, 1);
  for (std::int64_t i = 0; i < n; ++i)
    BOOST_TEST(std::abs((p0[i] - p[i]) - o.lr * (g[i] > 0 ? 1.f : -1.f)) < 1e-6);
  BOOST_CHECK_THROW(adam_update(p.data(), g.data(), m.data(), v.data(), n, o, 0),
                    std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(adam_late_steps_stay_finite) {
  // Bias corrections at a large step count must not blow up.
  std::vector<float> p = {1.f, -1.f}, g = {0.5f, -0.25f}, m(2, 0.f), v(2, 0.f);
  adam_options o;
  adam_update(p.data(), g.data(), m.data(), v.data(), 2, o, 1000000);
  for (float x : p)
    BOOST_TEST(std::isfinite(x));
}
