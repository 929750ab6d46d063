#include "kernels/cpu/gemm.hpp"

#include <dlfcn.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include <cblas.h>

#include "kernels/cpu/gemm_backend.hpp"
#include "kernels/cpu/onednn_gemm.hpp"

namespace troupe::kernels::cpu {
namespace {

// CBLAS takes 32-bit ints (blasint); a silent truncation would corrupt memory.
blasint to_blasint(std::int64_t v, const char* what) {
  if (v < 0 || v > std::numeric_limits<blasint>::max())
    throw std::length_error(std::string("gemm: ") + what + " out of range for CBLAS");
  return static_cast<blasint>(v);
}

CBLAS_TRANSPOSE to_cblas(trans t) {
  return t == trans::yes ? CblasTrans : CblasNoTrans;
}

// C = beta * C for the degenerate k == 0 / alpha == 0 cases, where some BLAS
// builds reject ld arguments or skip the beta == 0 NaN-clearing contract.
void scale_c(std::int64_t m, std::int64_t n, float beta, float* c, std::int64_t ldc) {
  for (std::int64_t i = 0; i < m; ++i) {
    float* __restrict row = c + i * ldc;
    if (beta == 0.f)
      std::fill(row, row + n, 0.f);
    else
      for (std::int64_t j = 0; j < n; ++j)
        row[j] *= beta;
  }
}

} // namespace

void gemm(trans ta, trans tb, std::int64_t m, std::int64_t n, std::int64_t k, float alpha,
          const float* a, std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c,
          std::int64_t ldc) {
  if (m == 0 || n == 0)
    return;
  if (k == 0 || alpha == 0.f) {
    scale_c(m, n, beta, c, ldc);
    return;
  }
  if (gemm_backend_for_this_thread() == gemm_backend::onednn) {
    onednn_gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  cblas_sgemm(CblasRowMajor, to_cblas(ta), to_cblas(tb), to_blasint(m, "m"), to_blasint(n, "n"),
              to_blasint(k, "k"), alpha, a, to_blasint(lda, "lda"), b, to_blasint(ldb, "ldb"), beta,
              c, to_blasint(ldc, "ldc"));
}

void gemm_strided_batched(trans ta, trans tb, std::int64_t m, std::int64_t n, std::int64_t k,
                          float alpha, const float* a, std::int64_t lda, std::int64_t stride_a,
                          const float* b, std::int64_t ldb, std::int64_t stride_b, float beta,
                          float* c, std::int64_t ldc, std::int64_t stride_c, std::int64_t batch) {
  // OpenBLAS 0.3.21 has no sgemm_batch; one call per matrix keeps the calling
  // thread's OpenMP thread budget in force for each product.
  for (std::int64_t i = 0; i < batch; ++i)
    gemm(ta, tb, m, n, k, alpha, a + i * stride_a, lda, b + i * stride_b, ldb, beta,
         c + i * stride_c, ldc);
}

void set_blas_threads_for_this_thread(int n) {
  omp_set_num_threads(std::max(1, n));
}

int blas_threads_for_this_thread() {
  return omp_get_max_threads();
}

std::string blas_description() {
  std::string out = "library=";
  Dl_info info{};
  // The file that actually provides cblas_sgemm: catches a libblas.so.3
  // alternative or LD_LIBRARY_PATH swapping in another build at run time.
  if (dladdr(reinterpret_cast<void*>(&cblas_sgemm), &info) != 0 && info.dli_fname != nullptr)
    out += info.dli_fname;
  else
    out += "?";
  const char* config = openblas_get_config();
  const char* core = openblas_get_corename();
  out += " config=\"";
  out += config != nullptr ? config : "?";
  out += "\" core=";
  out += core != nullptr ? core : "?";
  if (const char* env = std::getenv("OPENBLAS_CORETYPE"); env != nullptr) {
    out += " OPENBLAS_CORETYPE=";
    out += env;
  }
  out += " threads_this_thread=" + std::to_string(blas_threads_for_this_thread());
  return out;
}

double measure_gemm_gflops(std::int64_t m, std::int64_t n, std::int64_t k, int reps) {
  if (m <= 0 || n <= 0 || k <= 0)
    throw std::invalid_argument("measure_gemm_gflops: empty shape");
  reps = std::max(1, reps);
  std::vector<float> a(static_cast<std::size_t>(m * k)), b(static_cast<std::size_t>(k * n)),
      c(static_cast<std::size_t>(m * n), 0.f);
  // Deterministic, non-denormal data; values do not matter for timing.
  for (std::size_t i = 0; i < a.size(); ++i)
    a[i] = static_cast<float>(i % 13) * 0.01f - 0.06f;
  for (std::size_t i = 0; i < b.size(); ++i)
    b[i] = static_cast<float>(i % 7) * 0.02f - 0.06f;
  using clock = std::chrono::steady_clock;
  auto run = [&](int iters) {
    auto t0 = clock::now();
    for (int i = 0; i < iters; ++i)
      gemm(trans::no, trans::no, m, n, k, 1.f, a.data(), k, b.data(), n, 0.f, c.data(), n);
    return std::chrono::duration<double>(clock::now() - t0).count();
  };
  // Warm-up (thread pool start, page faults), then size each timed run to
  // roughly 20 ms so that small shapes are not dominated by clock resolution.
  run(1);
  double once = std::max(run(1), 1e-7);
  int iters = static_cast<int>(std::clamp(0.02 / once, 1.0, 100000.0));
  std::vector<double> gflops;
  for (int r = 0; r < reps; ++r) {
    double s = run(iters);
    gflops.push_back(2.0 * static_cast<double>(m) * static_cast<double>(n) *
                     static_cast<double>(k) * iters / s * 1e-9);
  }
  std::sort(gflops.begin(), gflops.end());
  return gflops[gflops.size() / 2];
}

} // namespace troupe::kernels::cpu
