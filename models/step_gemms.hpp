#pragma once

// The GEMMs of one training step, from a model's layers: what `troupe bench
// train` sets the step against (the GEMM-bound limit: these FLOPs at the rate
// BLAS reaches on exactly these shapes). Change here when a layer's forward
// or backward changes its GEMMs.

#include <cstdint>
#include <string>
#include <vector>

#include "models/layers/model_spec.hpp"

namespace troupe::models {

/// One sgemm call as kernels::cpu::gemm takes it: C[m x n] = op(A) op(B) (+ C).
struct gemm_call {
  std::string what; ///< "dense layer 0 forward", "... weight gradient", "... input gradient"
  bool trans_a = false, trans_b = false;
  std::int64_t m = 0, n = 0, k = 0;
  bool accumulate = false; ///< beta = 1 (a gradient summed over micro-batches)
  double flops() const { return 2.0 * static_cast<double>(m) * static_cast<double>(n) * k; }
};

/// A step's GEMMs, and the layers whose GEMMs are not counted (conv2d,
/// attention, transformer blocks: the limit is then partial).
struct step_gemms {
  std::vector<gemm_call> calls;
  std::vector<std::string> uncounted;
  double flops() const;
};

/// The GEMMs one training step of `spec` runs on one device: per micro-batch
/// of `microbatch` samples (`microbatches` of them) and dense layer, the
/// forward (rows x out x in), the weight gradient (out x in x rows; summed
/// into the previous micro-batches' after the first) and the input gradient
/// (rows x in x out; not for the model's first layer, whose input needs
/// none). rows = samples x the input's leading per-sample dims. Throws
/// std::invalid_argument for an invalid spec or counts < 1.
step_gemms training_gemms(const model_spec& spec, std::int64_t microbatch,
                          std::int64_t microbatches = 1);

/// Seconds each of `calls` takes through kernels::cpu::gemm on the calling
/// thread (its BLAS thread count): per call, the median of `reps` timed runs
/// after a warm-up, on operands of random values. Timed call by call, not as
/// one pass, so that a time slice lost to another process costs one sample
/// of one call rather than a whole pass: the medians hold up on a loaded
/// machine. Operands stay in cache between runs, as the step's weights
/// partly do: a limit no slower than the step's real GEMMs.
std::vector<double> time_gemms(const std::vector<gemm_call>& calls, int reps);

} // namespace troupe::models
