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

/// The same as a device's speed on the job (--balance auto): whole forward +
/// backward passes through every layer, repeated until `min_seconds` of wall
/// time have passed (at least three after a warm-up pass), each layer's mean.
/// A CPU quota throttles in periods (say 33 ms of every 100 ms): a probe of a
/// few milliseconds can fall inside one unthrottled slice, the mean over
/// several periods cannot. Throws std::invalid_argument for microbatch < 1.
std::vector<double> measure_layer_speed(const model_spec& spec, std::int64_t microbatch,
                                        std::uint64_t seed, double min_seconds);

} // namespace troupe::models
