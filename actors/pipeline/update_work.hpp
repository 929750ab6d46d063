#pragma once

// The device work that ends a training step without parameter servers: the
// flush of data-parallel buckets no backward completed, the gradients' sum
// of squares for global-norm clipping, and the optimizer update. The shard
// decides which is due (layer_shard.cpp); these say what each one does.

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include <caf/actor.hpp>

#include "actors/pipeline/shard_compute.hpp"
#include "runtime/tensor.hpp"

namespace troupe::actors {

/// Hands every bucket not yet launched in `step` to `shard` (a replica
/// without samples joins the all-reduce with zeros).
device_work flush_buckets_work(std::shared_ptr<compute_state> c, caf::actor shard,
                               std::int64_t step, float lr);

/// Data parallelism on a shared reduction: waits for the all-reduced sum of
/// every bucket of `step` and puts them in place (the step's all-reduce
/// figures go into the task_done). Runs after flush_buckets_work.
device_work gather_sums_work(std::shared_ptr<compute_state> c, std::int64_t step);

/// Puts the all-reduced sums in place and reports the gradients' sum of
/// squares (task_done::grad_sumsq), for the trainer's global total.
device_work grad_norm_work(std::shared_ptr<compute_state> c, std::vector<runtime::tensor> sums);

/// Whether a training step's optimizer update runs inside its backward,
/// layer by layer once the chunk's last backward has finished a layer's
/// gradients (update_layer): they are still in cache then. Only where
/// nothing needs the whole gradient first (no data parallelism, parameter
/// servers or clipping) and the backward is not split (a zero-bubble
/// schedule may still read weights after its last weight action). Each
/// parameter gets the same update as at the end, so results are bitwise.
bool folds_optimizer(const shard_config& cfg);

/// The optimizer update (not counted as a step) of layer `layer` of chunk
/// `chunk` with learning rate `lr`.
void update_layer(compute_state& c, std::size_t chunk, std::size_t layer, float lr);

/// Puts the all-reduced sums in place, clips to `clip_norm` with the global
/// sum of squares `total` (when clipping), steps the optimizer with `lr`
/// (or, when folds_optimizer(), only counts the step the backward made),
/// clears the gradients and reports the digest after_update() gives.
device_work optimizer_work(std::shared_ptr<compute_state> c, std::vector<runtime::tensor> sums,
                           float lr, double clip_norm, std::optional<double> total,
                           std::int64_t step);

} // namespace troupe::actors
