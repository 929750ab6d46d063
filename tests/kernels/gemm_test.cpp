#define BOOST_TEST_MODULE kernels_gemm
#define BOOST_TEST_DYN_LINK
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <thread>

#include "kernels/cpu/gemm.hpp"
#include "kernels/cpu/gemm_backend.hpp"
#include "kernels/cpu/onednn_gemm.hpp"
#include "runtime/error.hpp"
#include "test_util.hpp"

using namespace troupe::kernels::cpu;
using namespace troupe::kernels::test;

namespace {

// Naive row-major reference in double: C = alpha op(A) op(B) + beta C.
std::vector<double> ref_gemm(trans ta, trans tb, std::int64_t m, std::int64_t n, std::int64_t k,
                             double alpha, const std::vector<float>& a, std::int64_t lda,
                             const std::vector<float>& b, std::int64_t ldb, double beta,
                             const std::vector<float>& c, std::int64_t ldc) {
  std::vector<double> out(c.begin(), c.end());
  for (std::int64_t i = 0; i < m; ++i)
    for (std::int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (std::int64_t p = 0; p < k; ++p) {
        double av = ta == trans::no ? a[i * lda + p] : a[p * lda + i];
        double bv = tb == trans::no ? b[p * ldb + j] : b[j * ldb + p];
        s += av * bv;
      }
      double old = beta == 0 ? 0.0 : beta * c[i * ldc + j];
      out[i * ldc + j] = alpha * s + old;
    }
  return out;
}

void run_case(trans ta, trans tb, std::int64_t m, std::int64_t n, std::int64_t k, float alpha,
              float beta, std::int64_t pad) {
  const std::int64_t a_rows = ta == trans::no ? m : k, a_cols = ta == trans::no ? k : m;
  const std::int64_t b_rows = tb == trans::no ? k : n, b_cols = tb == trans::no ? n : k;
  const std::int64_t lda = a_cols + pad, ldb = b_cols + pad, ldc = n + pad;
  auto a = random_vector(static_cast<std::size_t>(a_rows * lda));
  auto b = random_vector(static_cast<std::size_t>(b_rows * ldb));
  auto c = random_vector(static_cast<std::size_t>(m * ldc));
  if (beta == 0.f) // beta == 0 must ignore C's old contents, NaNs included.
    std::fill(c.begin(), c.end(), std::numeric_limits<float>::quiet_NaN());
  auto want = ref_gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  gemm(ta, tb, m, n, k, alpha, a.data(), lda, b.data(), ldb, beta, c.data(), ldc);
  // Padding columns of C (j >= n) must stay untouched: compare the whole buffer.
  if (beta == 0.f)
    for (std::int64_t i = 0; i < m; ++i)
      for (std::int64_t j = n; j < ldc; ++j) {
        BOOST_REQUIRE(std::isnan(c[i * ldc + j]));
        c[i * ldc + j] = 0.f;
        want[i * ldc + j] = 0.0;
      }
  std::ostringstream what;
  what << "gemm ta=" << (ta == trans::yes) << " tb=" << (tb == trans::yes) << " m=" << m
       << " n=" << n << " k=" << k << " alpha=" << alpha << " beta=" << beta << " pad=" << pad;
  check_close(c, want, 2e-5 * std::sqrt(static_cast<double>(k) + 1), 1e-5, what.str());
}

} // namespace

/// Every contract case runs on both backends (gemm_backend.hpp); the backend
/// is restored afterwards, since it is the thread's.
struct on_backend {
  explicit on_backend(gemm_backend b) { set_gemm_backend_for_this_thread(b); }
  ~on_backend() { set_gemm_backend_for_this_thread(gemm_backend::automatic); }
};

const gemm_backend backends[] = {gemm_backend::openblas, gemm_backend::onednn};

BOOST_AUTO_TEST_CASE(gemm_odd_shapes_all_transposes) {
  const std::int64_t sizes[] = {1, 3, 7, 33, 127};
  for (auto backend : backends) {
    on_backend use{backend};
    for (auto ta : {trans::no, trans::yes})
      for (auto tb : {trans::no, trans::yes})
        for (std::int64_t m : sizes)
          for (std::int64_t n : sizes)
            for (std::int64_t k : {std::int64_t{1}, std::int64_t{7}, std::int64_t{127}})
              run_case(ta, tb, m, n, k, 1.f, 0.f, 0);
  }
}

BOOST_AUTO_TEST_CASE(gemm_alpha_beta_and_leading_dimensions) {
  for (auto backend : backends) {
    on_backend use{backend};
    for (auto ta : {trans::no, trans::yes})
      for (auto tb : {trans::no, trans::yes})
        for (float beta : {0.f, 1.f, -0.5f})
          for (int rep = 0; rep < 4; ++rep)
            run_case(ta, tb, random_int(1, 70), random_int(1, 70), random_int(1, 70),
                     rep % 2 ? 0.75f : 1.f, beta, random_int(0, 5));
  }
}

BOOST_AUTO_TEST_CASE(gemm_model_shapes) {
  for (auto backend : backends) {
    on_backend use{backend};
    // MLP forward / backward shapes at a small batch (dense 784 -> 33).
    run_case(trans::no, trans::yes, 5, 33, 784, 1.f, 0.f, 0); // y = x W^T
    run_case(trans::yes, trans::no, 33, 784, 5, 1.f, 1.f, 0); // dW += dy^T x
    run_case(trans::no, trans::no, 5, 784, 33, 1.f, 0.f, 0);  // dx = dy W
  }
}

BOOST_AUTO_TEST_CASE(gemm_backend_is_per_thread_and_parsed_by_name) {
  BOOST_TEST((parse_gemm_backend("onednn") == gemm_backend::onednn));
  BOOST_TEST((parse_gemm_backend("openblas") == gemm_backend::openblas));
  BOOST_CHECK_THROW(parse_gemm_backend("mkl"), troupe::runtime::input_error);
  BOOST_TEST(to_string(gemm_backend::onednn) == "onednn");
  on_backend use{gemm_backend::onednn};
  gemm_backend other = gemm_backend::onednn;
  std::thread([&] {
    set_blas_threads_for_this_thread(2);
    other = gemm_backend_for_this_thread();
  }).join();
  BOOST_TEST((other == gemm_backend::openblas)); // another thread: automatic, 2 BLAS threads
  BOOST_TEST((gemm_backend_for_this_thread() == gemm_backend::onednn));
  BOOST_TEST((parse_gemm_backend("auto") == gemm_backend::automatic));
  BOOST_TEST(to_string(gemm_backend::automatic) == "auto");
  // Deterministic: the same product twice (the second from the cache) is
  // bitwise the same.
  std::vector<float> a(64 * 784, 0.f), b(784 * 100, 0.f), c1(64 * 100), c2(64 * 100);
  for (std::size_t i = 0; i < a.size(); ++i)
    a[i] = static_cast<float>(i % 17) * 0.013f - 0.1f;
  for (std::size_t i = 0; i < b.size(); ++i)
    b[i] = static_cast<float>(i % 11) * 0.021f - 0.1f;
  gemm(trans::no, trans::no, 64, 100, 784, 1.f, a.data(), 784, b.data(), 100, 0.f, c1.data(), 100);
  gemm(trans::no, trans::no, 64, 100, 784, 1.f, a.data(), 784, b.data(), 100, 0.f, c2.data(), 100);
  BOOST_TEST(c1 == c2);
  BOOST_TEST(onednn_description().find("onednn=") == 0);
}

/// The default: oneDNN where the thread has one BLAS thread (a device per
/// core), OpenBLAS with more; resolved at each call with the thread's BLAS
/// threads of the moment.
BOOST_AUTO_TEST_CASE(automatic_gemm_follows_the_threads_blas_threads) {
  BOOST_TEST((resolve_gemm_backend(gemm_backend::automatic, 1) == gemm_backend::onednn));
  BOOST_TEST((resolve_gemm_backend(gemm_backend::automatic, 2) == gemm_backend::openblas));
  BOOST_TEST((resolve_gemm_backend(gemm_backend::openblas, 1) == gemm_backend::openblas));
  BOOST_TEST((resolve_gemm_backend(gemm_backend::onednn, 4) == gemm_backend::onednn));
  gemm_backend one = gemm_backend::automatic, two = gemm_backend::automatic,
               unset = gemm_backend::automatic;
  std::thread([&] {
    set_blas_threads_for_this_thread(1);
    unset = gemm_backend_for_this_thread(); // a thread that never set one
    set_gemm_backend_for_this_thread(gemm_backend::automatic);
    one = gemm_backend_for_this_thread();
    set_blas_threads_for_this_thread(2);
    two = gemm_backend_for_this_thread();
  }).join();
  BOOST_TEST((unset == gemm_backend::onednn));
  BOOST_TEST((one == gemm_backend::onednn));
  BOOST_TEST((two == gemm_backend::openblas));
}

BOOST_AUTO_TEST_CASE(gemm_degenerate_k_zero_and_alpha_zero) {
  std::vector<float> c(6, std::numeric_limits<float>::quiet_NaN());
  gemm(trans::no, trans::no, 2, 3, 0, 1.f, nullptr, 1, nullptr, 3, 0.f, c.data(), 3);
  for (float v : c)
    BOOST_TEST(v == 0.f);
  std::fill(c.begin(), c.end(), 2.f);
  gemm(trans::no, trans::no, 2, 3, 0, 1.f, nullptr, 1, nullptr, 3, 0.5f, c.data(), 3);
  for (float v : c)
    BOOST_TEST(v == 1.f);
  std::vector<float> a(4, 1.f), b(6, 1.f);
  gemm(trans::no, trans::no, 2, 3, 2, 0.f, a.data(), 2, b.data(), 3, 3.f, c.data(), 3);
  for (float v : c)
    BOOST_TEST(v == 3.f);
  // m == 0 or n == 0: nothing to do, nothing touched.
  gemm(trans::no, trans::no, 0, 3, 2, 1.f, a.data(), 2, b.data(), 3, 0.f, c.data(), 3);
  BOOST_TEST(c[0] == 3.f);
}

BOOST_AUTO_TEST_CASE(gemm_strided_batched_matches_per_matrix) {
  for (auto ta : {trans::no, trans::yes})
    for (auto tb : {trans::no, trans::yes}) {
      const std::int64_t batch = 3, m = 7, n = 5, k = 9;
      const std::int64_t lda = ta == trans::no ? k : m, ldb = tb == trans::no ? n : k, ldc = n;
      const std::int64_t sa = m * k + 2, sb = k * n + 1, sc = m * n + 3; // gaps between operands
      auto a = random_vector(static_cast<std::size_t>(sa * batch));
      auto b = random_vector(static_cast<std::size_t>(sb * batch));
      auto c = random_vector(static_cast<std::size_t>(sc * batch));
      std::vector<double> want(c.begin(), c.end());
      for (std::int64_t i = 0; i < batch; ++i) {
        std::vector<float> ai(a.begin() + i * sa, a.begin() + (i + 1) * sa);
        std::vector<float> bi(b.begin() + i * sb, b.begin() + (i + 1) * sb);
        std::vector<float> ci(c.begin() + i * sc, c.begin() + i * sc + m * n);
        auto r = ref_gemm(ta, tb, m, n, k, 0.5, ai, lda, bi, ldb, 2.0, ci, ldc);
        std::copy(r.begin(), r.end(), want.begin() + i * sc);
      }
      gemm_strided_batched(ta, tb, m, n, k, 0.5f, a.data(), lda, sa, b.data(), ldb, sb, 2.f,
                           c.data(), ldc, sc, batch);
      check_close(c, want, 1e-5, 1e-5, "gemm_strided_batched");
    }
}

BOOST_AUTO_TEST_CASE(blas_threads_are_per_calling_thread) {
  set_blas_threads_for_this_thread(1);
  BOOST_TEST(blas_threads_for_this_thread() == 1);
  int other = -1;
  std::thread t([&] {
    set_blas_threads_for_this_thread(2);
    other = blas_threads_for_this_thread();
  });
  t.join();
  BOOST_TEST(other == 2);
  BOOST_TEST(blas_threads_for_this_thread() == 1); // unaffected by the other thread
  set_blas_threads_for_this_thread(0);             // clamps to 1
  BOOST_TEST(blas_threads_for_this_thread() == 1);
}

BOOST_AUTO_TEST_CASE(blas_description_names_the_openmp_openblas) {
  const std::string d = blas_description();
  BOOST_TEST_MESSAGE("BLAS: " << d);
  BOOST_TEST(d.find("openblas") != std::string::npos);
  // The project links the OpenMP build explicitly; the pthread one would
  // ignore per-thread thread counts.
  BOOST_TEST(d.find("openmp") != std::string::npos, d);
  BOOST_TEST(d.find("core=") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(measure_gemm_gflops_is_positive) {
  set_blas_threads_for_this_thread(1);
  const double g = measure_gemm_gflops(64, 64, 64, 3);
  BOOST_TEST_MESSAGE("64^3 sgemm: " << g << " GFLOP/s");
  BOOST_TEST(g > 0.1);
  BOOST_CHECK_THROW(measure_gemm_gflops(0, 4, 4), std::invalid_argument);
}
