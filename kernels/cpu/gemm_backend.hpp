#pragma once

#include <string>
#include <string_view>

namespace troupe::kernels::cpu {

/// Which library runs kernels::cpu::gemm. Both are deterministic for a given
/// shape and thread count, but they sum in different orders, so a run's
/// parameters depend on the choice (bitwise), never its equivalences.
enum class gemm_backend {
  openblas, ///< CBLAS sgemm (OpenBLAS, OpenMP build)
  onednn,   ///< oneDNN's matmul primitive, one per shape, cached per thread
};

/// "openblas" / "onednn"; throws runtime::input_error naming anything else.
gemm_backend parse_gemm_backend(std::string_view name);
std::string to_string(gemm_backend b);

/// Sets the backend of gemm() calls made *from the calling thread*: like the
/// BLAS thread count, each device actor sets it once on its own thread.
void set_gemm_backend_for_this_thread(gemm_backend b);
gemm_backend gemm_backend_for_this_thread();

} // namespace troupe::kernels::cpu
