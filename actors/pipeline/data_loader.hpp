#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/atom.hpp>
#include <nlohmann/json.hpp>

#include "actors/pipeline/dataset.hpp"
#include "actors/protocol/messages.hpp"
#include "runtime/io/text_dataset.hpp"
#include "runtime/tensor.hpp"

namespace troupe::runtime::transport {
class courier;
}

namespace troupe::actors {

/// The non-overlapping windows (starts 0, T, 2T, ...) of a split of `text` as
/// a data set: every byte of the split after the first is a target once per
/// epoch, and the loader's shuffle and resume work on windows as on images.
dataset text_windows(const runtime::text_dataset& text, runtime::text_split split,
                     std::string name);

/// How a loader cuts the data set into batches. Inputs go to the model as
/// f32 through `transform` (MNIST's x / 255 is one), except that i32 inputs
/// for an i32 model (token ids) pass as they are; inputs are reshaped to
/// `sample_shape`.
struct loader_config {
  dataset data;
  runtime::shape_t sample_shape; ///< per-sample model input shape, e.g. [784]
  /// The model's input dtype; unset: i32 data as it is, any other as f32.
  std::optional<runtime::dtype> input_dtype;
  input_transform transform; ///< f32 inputs: normalisation (empty: none)
  /// Targets as f32 [n, K] (an mse loss), integer labels converted to their
  /// values; false: as the data set holds them.
  bool real_targets = false;
  std::int64_t batch = 64; ///< global batch; the last one of an epoch may be short
  int parts = 1;           ///< split each batch into this many parts (micro-batches)
  /// Data parallelism: the replicas' shares of every batch (weights summing
  /// to 1, split_by_shares) and which replica this loader feeds: it loads
  /// only that replica's samples. {1.0}, 0: the whole batch.
  std::vector<double> shares{1.0};
  int replica = 0;
  bool shuffle = true;
  std::uint64_t seed = 0;
  int prefetch = 2; ///< batches prepared ahead of the request
  /// How delivered batches leave the process (stages on other nodes); null:
  /// every stage is in this process.
  std::shared_ptr<runtime::transport::courier> courier;
};

/// A loader's settings as JSON, for a node to spawn it by: everything but
/// its data, transform and courier, which the node supplies. from_json throws
/// runtime::input_error naming a bad field.
nlohmann::json to_json(const loader_config& c);
loader_config loader_config_from_json(const nlohmann::json& j);

/// Cuts `n` samples into one count per share (weights summing to 1), by
/// largest remainder: floor(n * w) each, the leftover samples one each to the
/// largest fractional parts (ties to the lower index). Exact (the counts sum
/// to n) and the same on every process.
std::vector<std::int64_t> split_by_shares(std::int64_t n, const std::vector<double>& shares);

/// Batches per epoch: ceil(N / batch).
std::int64_t batches_per_epoch(std::int64_t samples, std::int64_t batch);

/// The order of the samples in `epoch`: a Fisher-Yates shuffle driven by the
/// counter-based stream (seed, epoch), so any position can be resumed exactly
/// from (epoch, batch index) alone.
std::vector<std::int32_t> epoch_permutation(std::int64_t samples, std::uint64_t seed,
                                            std::int64_t epoch);

/// Builds the batch at (epoch, index) directly (also what the actor does):
/// this replica's part of it, cut into at most cfg.parts micro-batches (none
/// when its share of a short last batch is empty). batch_msg::size is the
/// whole global batch, offsets are relative to it.
actors::batch_msg make_batch(const loader_config& cfg, const std::vector<std::int32_t>& order,
                             std::int64_t epoch, std::int64_t index);

/// (reshare_atom, shares): the replicas' shares from the next batch handed
/// out on (live rebalancing; one weight per replica, summing to 1). Wrong
/// shares end the loader with an error (the job's failure, not a hang).
using reshare_atom = caf::atom_constant<caf::atom("reshare")>;

/// A data-loader actor:
///   (next_batch_atom) -> batch_msg   the batch at the current position, then advances
///   (next_batch_atom, step, training, inputs_to, labels_to) -> batch_msg
///       the same, but the loader delivers it: part i as activation_msg{step, i} to every
///       actor of inputs_to (a replica's first stage, one per tensor-parallel rank) and
///       labels_msg{step, i} to every actor of labels_to (its loss stage); the answer
///       keeps only the positions and counts. The trainer asks this way, so inputs go
///       from the loader's process straight to the stages, never through the trainer's.
///   (prefetch_atom)   prepare up to `prefetch` batches ahead now
///   (seek_atom, epoch, index) -> bool
///   (reshare_atom, shares)
/// It prepares batches ahead when told (prefetch_atom), or when a request
/// took its last prepared one. Not after every request: the preparation
/// would run before the requester, on the same worker thread, got the
/// answer (40 us of an MNIST batch of 64, between two steps).
caf::actor spawn_data_loader(caf::actor_system& sys, loader_config cfg);

} // namespace troupe::actors
