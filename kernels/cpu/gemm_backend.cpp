#include "kernels/cpu/gemm_backend.hpp"

#include "kernels/cpu/gemm.hpp"
#include "runtime/error.hpp"

namespace troupe::kernels::cpu {
namespace {

/// Per thread, as OpenMP's thread budget is: devices on one process may
/// differ, and nothing is shared between threads. Kept as asked and resolved
/// at each call, so automatic follows the thread's BLAS threads.
thread_local gemm_backend this_thread_backend = gemm_backend::automatic;

} // namespace

gemm_backend parse_gemm_backend(std::string_view name) {
  for (auto b : {gemm_backend::automatic, gemm_backend::openblas, gemm_backend::onednn})
    if (name == to_string(b))
      return b;
  throw runtime::input_error("--gemm must be auto, openblas or onednn, got '" + std::string{name} +
                             "'");
}

std::string to_string(gemm_backend b) {
  switch (b) {
  case gemm_backend::automatic:
    return "auto";
  case gemm_backend::openblas:
    return "openblas";
  case gemm_backend::onednn:
    return "onednn";
  }
  return "?";
}

gemm_backend resolve_gemm_backend(gemm_backend b, int blas_threads) {
  if (b != gemm_backend::automatic)
    return b;
  return blas_threads == 1 ? gemm_backend::onednn : gemm_backend::openblas;
}

void set_gemm_backend_for_this_thread(gemm_backend b) {
  this_thread_backend = b;
}

gemm_backend gemm_backend_for_this_thread() {
  return resolve_gemm_backend(this_thread_backend, blas_threads_for_this_thread());
}

} // namespace troupe::kernels::cpu
