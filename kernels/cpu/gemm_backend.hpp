#pragma once

#include <string>
#include <string_view>

namespace troupe::kernels::cpu {

/// Which library runs kernels::cpu::gemm. Both are deterministic for a given
/// shape and thread count, but they sum in different orders, so a run's
/// parameters depend on the choice (bitwise), never its equivalences.
enum class gemm_backend {
  /// The default: oneDNN on a thread with 1 BLAS thread, OpenBLAS with more.
  /// One thread per device is troupe's common case (data parallelism, pipeline
  /// stages, --pin-cores) and oneDNN's matmul is faster there (docs/benchmarks.md,
  /// "oneDNN by default"); with more threads oneDNN forks its OpenMP team even
  /// for products OpenBLAS runs on one thread, which a busy machine punishes.
  automatic,
  openblas, ///< CBLAS sgemm (OpenBLAS, OpenMP build)
  onednn,   ///< oneDNN's matmul primitive, one per shape, cached per thread
};

/// "auto" / "openblas" / "onednn"; throws runtime::input_error naming anything else.
gemm_backend parse_gemm_backend(std::string_view name);
std::string to_string(gemm_backend b);

/// The library `b` means on a thread with `blas_threads` BLAS threads: never
/// automatic.
gemm_backend resolve_gemm_backend(gemm_backend b, int blas_threads);

/// Sets the backend of gemm() calls made *from the calling thread*: like the
/// BLAS thread count, each device actor sets it once on its own thread. A
/// thread that never sets it runs automatic, as a device does by default.
void set_gemm_backend_for_this_thread(gemm_backend b);
/// The library the calling thread's gemm() calls run on now: automatic
/// resolved with the thread's current BLAS thread count, so never automatic.
gemm_backend gemm_backend_for_this_thread();

} // namespace troupe::kernels::cpu
