#pragma once

// What each layer of a model costs to train, measured: the partitioner
// balances pipeline stages by it (--partition measured) instead of by
// counted FLOPs, which miss memory-bound layers (activations, normalisation,
// softmax) and what a GEMM's shape does to its speed.

#include <cstdint>
#include <vector>

#include "models/layers/model_spec.hpp"

namespace troupe::models {

/// Seconds per micro-batch of `microbatch` samples for each layer of `spec`:
/// forward plus backward, the median of `reps` timed runs after one warm-up,
/// on the calling thread (inputs are random; token ids for a language model).
/// Throws std::invalid_argument for microbatch < 1 or reps < 1.
std::vector<double> measure_layer_costs(const model_spec& spec, std::int64_t microbatch,
                                        std::uint64_t seed, int reps = 3);

} // namespace troupe::models
