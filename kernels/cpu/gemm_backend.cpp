#include "kernels/cpu/gemm_backend.hpp"

#include "runtime/error.hpp"

namespace troupe::kernels::cpu {
namespace {

/// Per thread, as OpenMP's thread budget is: devices on one process may
/// differ, and nothing is shared between threads.
thread_local gemm_backend this_thread_backend = gemm_backend::openblas;

} // namespace

gemm_backend parse_gemm_backend(std::string_view name) {
  for (auto b : {gemm_backend::openblas, gemm_backend::onednn})
    if (name == to_string(b))
      return b;
  throw runtime::input_error("--gemm must be openblas or onednn, got '" + std::string{name} + "'");
}

std::string to_string(gemm_backend b) {
  return b == gemm_backend::onednn ? "onednn" : "openblas";
}

void set_gemm_backend_for_this_thread(gemm_backend b) {
  this_thread_backend = b;
}

gemm_backend gemm_backend_for_this_thread() {
  return this_thread_backend;
}

} // namespace troupe::kernels::cpu
