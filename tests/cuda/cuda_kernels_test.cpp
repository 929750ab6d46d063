// Compares the CUDA kernels (kernels/cuda) with the CPU kernels on random data.
// Without a usable GPU it prints the probe's reason and exits 77 (ctest: Skipped).

#define BOOST_TEST_DYN_LINK
#define BOOST_TEST_MODULE cuda_kernels
#define BOOST_TEST_NO_MAIN
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "kernels/cpu/elementwise.hpp"
#include "kernels/cpu/gemm.hpp"
#include "kernels/cpu/optimizers.hpp"
#include "kernels/cuda/kernels.hpp"
#include "kernels/gpu.hpp"

namespace cpu = troupe::kernels::cpu;
namespace gpu = troupe::kernels::cuda;

namespace {

std::vector<float> random_vector(std::size_t n, unsigned seed, float lo = -2.f, float hi = 2.f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

/// ||a - b|| / max(||b||, tiny)
double rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
  BOOST_REQUIRE_EQUAL(a.size(), b.size());
  double num = 0, den = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(b[i]) * b[i];
  }
  return std::sqrt(num) / std::max(std::sqrt(den), 1e-30);
}

/// A device copy of a host vector, copied back with host().
class device_vector {
public:
  explicit device_vector(const std::vector<float>& h)
    : n_(static_cast<std::int64_t>(h.size())), p_(gpu::alloc_floats(n_)) {
    gpu::copy_to_device(p_, h.data(), n_);
  }
  ~device_vector() { gpu::free_device(p_); }
  device_vector(const device_vector&) = delete;
  device_vector& operator=(const device_vector&) = delete;
  float* get() { return p_; }
  std::vector<float> host() const {
    gpu::synchronize();
    std::vector<float> h(static_cast<std::size_t>(n_));
    gpu::copy_to_host(h.data(), p_, n_);
    return h;
  }

private:
  std::int64_t n_;
  float* p_;
};

constexpr double elementwise_tol = 1e-6;
constexpr double gemm_tol = 1e-5;

} // namespace

BOOST_AUTO_TEST_CASE(gemm_matches_cpu_for_all_transpositions) {
  const std::int64_t m = 37, n = 53, k = 29;
  for (auto ta : {cpu::trans::no, cpu::trans::yes})
    for (auto tb : {cpu::trans::no, cpu::trans::yes}) {
      // Row-major leading dimensions of the stored (untransposed) operands,
      // padded to check that lda/ldb/ldc are honoured.
      const std::int64_t lda = (ta == cpu::trans::no ? k : m) + 3;
      const std::int64_t ldb = (tb == cpu::trans::no ? n : k) + 2;
      const std::int64_t ldc = n + 1;
      auto a = random_vector(std::size_t((ta == cpu::trans::no ? m : k) * lda), 1);
      auto b = random_vector(std::size_t((tb == cpu::trans::no ? k : n) * ldb), 2);
      auto c = random_vector(std::size_t(m * ldc), 3);
      device_vector da(a), db(b), dc(c);
      cpu::gemm(ta, tb, m, n, k, 0.75f, a.data(), lda, b.data(), ldb, 0.5f, c.data(), ldc);
      gpu::gemm(ta, tb, m, n, k, 0.75f, da.get(), lda, db.get(), ldb, 0.5f, dc.get(), ldc);
      BOOST_TEST_CONTEXT("ta=" << bool(ta) << " tb=" << bool(tb)) {
        BOOST_TEST(rel_diff(dc.host(), c) < gemm_tol);
      }
    }
}

BOOST_AUTO_TEST_CASE(bias_and_activations_match_cpu) {
  const std::int64_t rows = 65, cols = 130, n = rows * cols;
  auto x = random_vector(std::size_t(n), 10);
  auto bias = random_vector(std::size_t(cols), 11);
  auto dy = random_vector(std::size_t(n), 12);

  {
    auto y = x;
    device_vector dy_(x), db(bias);
    cpu::add_bias_rows(y.data(), bias.data(), rows, cols);
    gpu::add_bias_rows(dy_.get(), db.get(), rows, cols);
    BOOST_TEST(rel_diff(dy_.host(), y) < elementwise_tol);
  }
  {
    auto y = x;
    device_vector dy_(x), db(bias);
    cpu::add_bias_relu_rows(y.data(), bias.data(), rows, cols);
    gpu::add_bias_relu_rows(dy_.get(), db.get(), rows, cols);
    BOOST_TEST(rel_diff(dy_.host(), y) < elementwise_tol);
  }
  {
    std::vector<float> y(x.size()), dx(x.size());
    cpu::relu_forward(x.data(), y.data(), n);
    cpu::relu_backward(y.data(), dy.data(), dx.data(), n);
    device_vector dx_in(x), dout(x), ddy(dy), ddx(dy);
    gpu::relu_forward(dx_in.get(), dout.get(), n);
    gpu::relu_backward(dout.get(), ddy.get(), ddx.get(), n);
    BOOST_TEST(rel_diff(dout.host(), y) < elementwise_tol);
    BOOST_TEST(rel_diff(ddx.host(), dx) < elementwise_tol);
  }
  {
    std::vector<float> y(x.size()), dx(x.size());
    cpu::gelu_forward(x.data(), y.data(), n);
    cpu::gelu_backward(x.data(), dy.data(), dx.data(), n);
    device_vector dx_in(x), dout(x), ddy(dy);
    gpu::gelu_forward(dx_in.get(), dout.get(), n);
    gpu::gelu_backward(dx_in.get(), ddy.get(), ddy.get(), n); // dx aliases dy
    BOOST_TEST(rel_diff(dout.host(), y) < elementwise_tol);
    BOOST_TEST(rel_diff(ddy.host(), dx) < elementwise_tol);
  }
}

BOOST_AUTO_TEST_CASE(sgd_matches_cpu_over_steps) {
  const std::int64_t n = 10007;
  auto p = random_vector(std::size_t(n), 20);
  std::vector<float> buf(std::size_t(n), 0.f);
  device_vector dp(p), dbuf(buf);
  const cpu::sgd_options o{.lr = 0.05f, .momentum = 0.9f, .weight_decay = 1e-3f};
  for (int step = 0; step < 4; ++step) {
    auto g = random_vector(std::size_t(n), 100 + unsigned(step));
    device_vector dg(g);
    cpu::sgd_update(p.data(), g.data(), buf.data(), n, o, step == 0);
    gpu::sgd_update(dp.get(), dg.get(), dbuf.get(), n, o, step == 0);
    gpu::synchronize();
  }
  BOOST_TEST(rel_diff(dp.host(), p) < elementwise_tol);
  BOOST_TEST(rel_diff(dbuf.host(), buf) < elementwise_tol);
}

BOOST_AUTO_TEST_CASE(adam_and_adamw_match_cpu_over_steps) {
  const std::int64_t n = 10007;
  for (bool decoupled : {false, true}) {
    auto p = random_vector(std::size_t(n), 30);
    std::vector<float> m(std::size_t(n), 0.f), v(std::size_t(n), 0.f);
    device_vector dp(p), dm(m), dv(v);
    cpu::adam_options o;
    o.lr = 1e-2f;
    o.weight_decay = 1e-2f;
    o.decoupled = decoupled;
    for (std::int64_t step = 1; step <= 4; ++step) {
      auto g = random_vector(std::size_t(n), 200 + unsigned(step));
      device_vector dg(g);
      cpu::adam_update(p.data(), g.data(), m.data(), v.data(), n, o, step);
      gpu::adam_update(dp.get(), dg.get(), dm.get(), dv.get(), n, o, step);
      gpu::synchronize();
    }
    BOOST_TEST_CONTEXT("decoupled=" << decoupled) {
      BOOST_TEST(rel_diff(dp.host(), p) < elementwise_tol);
      BOOST_TEST(rel_diff(dm.host(), m) < elementwise_tol);
      BOOST_TEST(rel_diff(dv.host(), v) < elementwise_tol);
    }
  }
}

int main(int argc, char* argv[]) {
  const auto probe = troupe::kernels::probe_gpus();
  if (probe.usable_devices == 0) {
    std::printf("SKIPPED: no usable CUDA device (%s)\n", probe.reason.c_str());
    return 77; // SKIP_RETURN_CODE in tests/cuda/CMakeLists.txt
  }
  std::printf("cuda_kernels_test: %d usable CUDA device(s)\n", probe.usable_devices);
  return boost::unit_test::unit_test_main(&init_unit_test, argc, argv);
}
