// Row-major GEMM on cuBLAS (column-major): a row-major C = op(A) op(B) is the
// column-major C^T = op(B)^T op(A)^T, so swap the operands and m/n and keep
// the transposition flags; leading dimensions stay as given.

#include <cublas_v2.h>

#include <limits>
#include <map>
#include <stdexcept>
#include <string>

#include "kernels/cuda/kernels.hpp"

namespace troupe::kernels::cuda {
namespace {

void check_cublas(cublasStatus_t st, const char* what) {
  if (st != CUBLAS_STATUS_SUCCESS)
    throw std::runtime_error(std::string("cublas: ") + what + ": " + cublasGetStatusName(st) +
                             " (" + cublasGetStatusString(st) + ")");
}

/// One handle per (thread, device), destroyed when the thread exits.
class thread_handles {
public:
  ~thread_handles() {
    for (auto& [dev, h] : handles_) (void)cublasDestroy(h);
  }
  cublasHandle_t get() {
    int dev = 0;
    check(cudaGetDevice(&dev), "cudaGetDevice");
    auto it = handles_.find(dev);
    if (it != handles_.end()) return it->second;
    cublasHandle_t h = nullptr;
    check_cublas(cublasCreate(&h), "cublasCreate");
    handles_.emplace(dev, h);
    return h;
  }

private:
  std::map<int, cublasHandle_t> handles_;
};

int to_int(std::int64_t v, const char* what) {
  if (v < 0 || v > std::numeric_limits<int>::max())
    throw std::invalid_argument(std::string("cuda::gemm: ") + what + " out of range: " +
                                std::to_string(v));
  return static_cast<int>(v);
}

cublasOperation_t op(trans t) { return t == trans::yes ? CUBLAS_OP_T : CUBLAS_OP_N; }

} // namespace

void gemm(trans ta, trans tb, std::int64_t m, std::int64_t n, std::int64_t k, float alpha,
          const float* a, std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c,
          std::int64_t ldc, cudaStream_t stream) {
  if (m == 0 || n == 0) return;
  thread_local thread_handles handles;
  cublasHandle_t h = handles.get();
  check_cublas(cublasSetStream(h, stream), "cublasSetStream");
  check_cublas(cublasSgemm(h, op(tb), op(ta), to_int(n, "n"), to_int(m, "m"), to_int(k, "k"),
                           &alpha, b, to_int(ldb, "ldb"), a, to_int(lda, "lda"), &beta, c,
                           to_int(ldc, "ldc")),
               "cublasSgemm");
}

} // namespace troupe::kernels::cuda
