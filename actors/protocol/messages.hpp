#pragma once

// The training protocol's message types and atoms. Every type that crosses an
// actor boundary is declared here and registered in one place
// (register_protocol in actors/protocol/system_config.hpp), so every node of a
// cluster registers the same types under the same names.

#include <cstdint>
#include <string>
#include <vector>

#include <caf/atom.hpp>
#include <caf/meta/type_name.hpp>

#include "runtime/named_tensors.hpp"
#include "runtime/net/tensor_inspect.hpp"
#include "runtime/tensor.hpp"

namespace troupe::actors {

using runtime::named_tensors;
using runtime::tensor;

/// A micro-batch of inputs or activations flowing forward. The sample offset is
/// the index of its first sample within the step's global batch.
struct activation_msg {
  std::int64_t step = 0;
  std::int32_t mb = 0;
  std::int64_t sample_offset = 0;
  bool training = true;
  tensor data;
  std::int32_t chunk = 0; ///< the receiver's chunk (virtual stage on its device)
};

/// The gradient of the loss w.r.t. a stage's output, flowing backward.
struct gradient_msg {
  std::int64_t step = 0;
  std::int32_t mb = 0;
  tensor data;
  std::int32_t chunk = 0; ///< the receiver's chunk (virtual stage on its device)
};

/// Labels of one micro-batch, sent by the trainer to the stage owning the loss.
struct labels_msg {
  std::int64_t step = 0;
  std::int32_t mb = 0;
  tensor labels;
};

/// Starts a step on a stage: which micro-batches to expect and the learning
/// rate of this step's optimizer update (training only).
struct step_msg {
  std::int64_t step = 0;
  std::int32_t microbatches = 1;
  std::int64_t global_batch = 0;
  float lr = 0;
  bool training = true;
  /// An evaluation whose outputs are wanted (`troupe predict`): the loss stage
  /// puts its micro-batches' outputs into its report.
  bool outputs = false;
};

/// What a stage reports when it has finished a step.
struct stage_report {
  std::int32_t stage = 0;
  std::int64_t step = 0;
  double loss_sum = 0; ///< only the loss stage fills loss_sum and correct
  std::int64_t correct = 0;
  std::int64_t samples = 0;
  double compute_seconds = 0;      ///< time its device spent running its kernels
  std::int32_t peak_in_flight = 0; ///< most micro-batches with saved activations
  std::uint64_t peak_saved_bytes = 0;
  std::uint64_t messages_sent = 0; ///< activations and gradients sent to peer stages
  std::uint64_t bytes_sent = 0;    ///< their tensor payload bytes
  /// Predictions the loss_sum covers: samples for a classifier, samples x
  /// context for a language model (its loss is reported per token).
  std::int64_t tokens = 0;
  /// Regression (mse): the sum over samples of the mean |prediction - target|.
  double abs_error_sum = 0;
  /// With gradient clipping: the sum of squares of this stage's gradients
  /// before clipping (its part of the global norm); 0 otherwise.
  double grad_sumsq = 0;
  std::int32_t replica = 0; ///< data-parallel replica of the stage
  /// Data parallelism (--check-replicas): a digest of the stage's parameters
  /// after this step's update, which must be equal on every replica.
  bool has_digest = false;
  std::uint64_t params_digest = 0;
  /// Gradient all-reduces of the step: buckets, their bytes, and the time
  /// from the first bucket's launch to the last one's result.
  std::int32_t buckets = 0;
  std::uint64_t allreduce_bytes = 0;
  double allreduce_seconds = 0;
  /// Steps whose update was made in the in-process shared reduction (plain
  /// SGD on one parameter copy) instead of an optimizer pass: 0 or 1.
  std::int32_t updates_in_reduction = 0;
  std::int32_t tp_rank = 0; ///< tensor-parallel rank of the shard within its stage
  /// Parameter servers: gradient bytes pushed and parameter bytes pulled this
  /// step, and the time from the push to the last pulled parameters.
  std::uint64_t ps_bytes = 0;
  double ps_seconds = 0;
  /// step_msg::outputs: the loss stage's outputs of each micro-batch, and
  /// each one's first sample within the step's global batch.
  std::vector<tensor> outputs;
  std::vector<std::int64_t> output_offsets;
};

/// One global batch from a data loader, already split into the parts (micro-
/// batches) its consumer asked for. offsets[i] is the index of part i's first
/// sample within the global batch, counts[i] its samples. A loader that
/// delivered the parts to the stages itself (next_batch_atom with a route)
/// answers with inputs and labels empty: the trainer sees no tensor.
struct batch_msg {
  std::int64_t epoch = 0;
  std::int64_t index = 0; ///< batch index within the epoch
  std::int64_t size = 0;  ///< samples in the whole batch (the last one may be short)
  std::vector<tensor> inputs;
  std::vector<tensor> labels;
  std::vector<std::int64_t> offsets;
  std::vector<std::int64_t> counts;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, batch_msg& x) {
  return f(caf::meta::type_name("batch_msg"), x.epoch, x.index, x.size, x.inputs, x.labels,
           x.offsets, x.counts);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, activation_msg& x) {
  return f(caf::meta::type_name("activation_msg"), x.step, x.mb, x.sample_offset, x.training,
           x.data, x.chunk);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, gradient_msg& x) {
  return f(caf::meta::type_name("gradient_msg"), x.step, x.mb, x.data, x.chunk);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, labels_msg& x) {
  return f(caf::meta::type_name("labels_msg"), x.step, x.mb, x.labels);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, step_msg& x) {
  return f(caf::meta::type_name("step_msg"), x.step, x.microbatches, x.global_batch, x.lr,
           x.training, x.outputs);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, stage_report& x) {
  return f(caf::meta::type_name("stage_report"), x.stage, x.step, x.loss_sum, x.correct, x.samples,
           x.compute_seconds, x.peak_in_flight, x.peak_saved_bytes, x.messages_sent, x.bytes_sent,
           x.tokens, x.grad_sumsq, x.replica, x.has_digest, x.params_digest, x.buckets,
           x.allreduce_bytes, x.allreduce_seconds, x.tp_rank, x.ps_bytes, x.ps_seconds,
           x.abs_error_sum, x.outputs, x.output_offsets, x.updates_in_reduction);
}

// Atoms (CAF 0.17: at most 10 characters).
using get_params_atom = caf::atom_constant<caf::atom("getparams")>;
using set_params_atom = caf::atom_constant<caf::atom("setparams")>;
using get_state_atom = caf::atom_constant<caf::atom("getstate")>;
using set_state_atom = caf::atom_constant<caf::atom("setstate")>;
/// (get_trace_atom) -> std::string: a JSON array of the actor's trace events
/// (runtime/telemetry/trace.hpp, shipped form); a string crosses processes as is.
using get_trace_atom = caf::atom_constant<caf::atom("gettrace")>;
/// Recovery: (salvage_atom) -> (named_tensors params, named_tensors state):
/// a layer shard's parameters and optimizer state (its "steps" metadata
/// saying how many updates they hold), mid-step too, but never mid-update.
using salvage_atom = caf::atom_constant<caf::atom("salvage")>;
/// (step_failed_atom, what) layer shard -> trainer (-> supervisor): the step
/// cannot finish (its all-reduce failed: a replica was lost). The shard stays
/// alive with the parameters of its last update, for recovery to salvage.
using step_failed_atom = caf::atom_constant<caf::atom("stepfailed")>;
/// Stall diagnosis: (doing_atom) -> std::string: JSON of what the actor is
/// doing now: its step, its current action and what it waits for.
using doing_atom = caf::atom_constant<caf::atom("doing")>;
using next_batch_atom = caf::atom_constant<caf::atom("nextbatch")>;
/// (prefetch_atom) trainer -> data loader once the step of the batch it was
/// handed is on its way (training::prefetch_delay after): the loader
/// prepares the next ones now (data_loader.hpp).
using prefetch_atom = caf::atom_constant<caf::atom("prefetch")>;
using seek_atom = caf::atom_constant<caf::atom("seek")>;
using measure_atom = caf::atom_constant<caf::atom("measure")>;
using wire_atom = caf::atom_constant<caf::atom("wire")>;
using run_atom = caf::atom_constant<caf::atom("run")>;
using abort_atom = caf::atom_constant<caf::atom("abort")>;
/// Global-norm clipping of a training step (--clip-norm), two messages:
/// (grad_sumsq_atom, step, stage, sum of squares) from each stage to the
/// trainer once its gradients are complete, before its optimizer runs; then
/// (clip_atom, step, total sum of squares) from the trainer to every stage,
/// which clips with the global total and applies its optimizer.
using grad_sumsq_atom = caf::atom_constant<caf::atom("gradsumsq")>;
using clip_atom = caf::atom_constant<caf::atom("clip")>;
/// Data parallelism: (dp_group_atom, collective rank, bool devices_own) gives
/// a layer shard its rank in the group of its stage's replicas (and whether
/// no device of the group runs another shard: layer_shard.hpp); (sync_params_atom) -> bool makes
/// it take replica 0's parameters (a broadcast in that group) before training.
using dp_group_atom = caf::atom_constant<caf::atom("dpgroup")>;
using sync_params_atom = caf::atom_constant<caf::atom("syncparams")>;
/// Tensor parallelism: (tp_group_atom, collective rank) gives a layer shard
/// its rank in the group of the shards that split its layers' tensors.
using tp_group_atom = caf::atom_constant<caf::atom("tpgroup")>;
/// Parameter servers: gives a layer shard the ps shards that hold its
/// stage's parameters (actors/ps/ps_client.hpp).
using ps_group_atom = caf::atom_constant<caf::atom("psgroup")>;

// --- Collectives (actors/collectives/collective_group.hpp) ---

/// The collective a collective_msg belongs to; for all-reduce also the
/// algorithm, since every rank of one operation must run the same plan.
enum class collective_kind : std::int32_t {
  none = 0,
  allreduce_ring = 1,
  allreduce_tree = 2,
  reduce_scatter = 3,
  all_gather = 4,
  broadcast = 5,
};

/// "all-reduce (ring)", "broadcast", ...: the name error messages use.
inline std::string to_string(collective_kind k) {
  switch (k) {
  case collective_kind::allreduce_ring:
    return "all-reduce (ring)";
  case collective_kind::allreduce_tree:
    return "all-reduce (tree)";
  case collective_kind::reduce_scatter:
    return "reduce-scatter";
  case collective_kind::all_gather:
    return "all-gather";
  case collective_kind::broadcast:
    return "broadcast";
  case collective_kind::none:
    break;
  }
  return "unknown collective";
}

/// What a collective_msg's `data` holds.
enum class collective_payload : std::int32_t {
  /// The segment of the block itself (what crosses processes).
  piece = 0,
  /// The sender's whole input buffer (shared, never copied; only to a rank in
  /// the same process): the receiver reads the segment's range of it.
  whole_input = 1,
};

inline std::string to_string(collective_payload p) {
  return p == collective_payload::whole_input ? "whole_input" : "piece";
}

/// One step of a collective plan (collective_algorithms.hpp) between two
/// collective rank actors: segment `segment` of block `block`, sent at plan
/// step `step`. `kind`, `root` and `total` let the receiver check that every
/// rank runs the same operation on the same buffer size.
struct collective_msg {
  std::int64_t op = 0; ///< operation id chosen by the callers (same on every rank)
  collective_kind kind = collective_kind::none;
  collective_payload payload = collective_payload::piece;
  std::int32_t root = 0;    ///< broadcast root
  std::int32_t step = 0;    ///< plan step at which the sender sent it
  std::int32_t block = 0;   ///< block index in the plan
  std::int32_t segment = 0; ///< segment of the block (large blocks are pipelined)
  std::int32_t from = 0;    ///< sender rank
  std::int64_t total = -1;  ///< elements of the whole buffer (reducing kinds; -1 otherwise)
  tensor data;
};

/// Counters of one collective rank actor.
struct collective_stats {
  std::int32_t rank = 0;
  std::int32_t size = 0;
  std::uint64_t bytes_sent = 0; ///< tensor payload bytes sent to peers
  std::uint64_t messages_sent = 0;
  std::uint64_t ops_completed = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, collective_msg& x) {
  return f(caf::meta::type_name("collective_msg"), x.op, x.kind, x.payload, x.root, x.step, x.block,
           x.segment, x.from, x.total, x.data);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, collective_stats& x) {
  return f(caf::meta::type_name("collective_stats"), x.rank, x.size, x.bytes_sent, x.messages_sent,
           x.ops_completed);
}

using allreduce_atom = caf::atom_constant<caf::atom("allreduce")>;
using broadcast_atom = caf::atom_constant<caf::atom("broadcast")>;
using reduce_scatter_atom = caf::atom_constant<caf::atom("redscatter")>;
using all_gather_atom = caf::atom_constant<caf::atom("allgather")>;
using coll_stats_atom = caf::atom_constant<caf::atom("collstats")>;
/// (shared_reduction_atom) -> shared_reduction_ref (in process only; see
/// actors/collectives/shared_reduction.hpp).
using shared_reduction_atom = caf::atom_constant<caf::atom("sharedred")>;

// --- Parameter servers (actors/ps/ps_shard.hpp) ---

/// ps_msg::kind values.
inline constexpr std::int32_t ps_push = 0;   ///< gradients, worker -> ps shard
inline constexpr std::int32_t ps_params = 1; ///< parameters, ps shard -> worker

/// Between a worker (a layer shard's ps_client) and a parameter-server shard:
/// a push carries worker `worker`'s gradients of stage `stage`'s pieces on
/// shard `shard` for step `step`, a params reply the pieces' values after
/// `version` updates. `data` is f32 and flat, the pieces in assignment order.
struct ps_msg {
  std::int32_t kind = ps_push;
  std::int64_t step = 0;
  std::int32_t worker = 0;
  std::int32_t stage = 0;
  std::int32_t shard = 0;
  std::int64_t version = 0; ///< params: updates of the stage applied in `data`
  float lr = 0;             ///< push: learning rate of the update
  float scale = 1;          ///< push: factor applied to the gradient (e.g. 1/W)
  tensor data;
};

/// Counters of one parameter-server shard.
struct ps_stats {
  std::int32_t shard = 0;
  std::int64_t version = 0; ///< the lowest version among its stages (0: holds none)
  std::uint64_t pushes = 0;
  std::uint64_t pulls = 0; ///< pulls served
  std::uint64_t bytes_in = 0;
  std::uint64_t bytes_out = 0;
  std::uint64_t updates = 0; ///< optimizer steps applied
  /// Largest staleness seen when serving a pull: its step minus the slowest
  /// worker's pushed steps (SSP keeps it <= K).
  std::int64_t max_gap = 0;
  double apply_seconds = 0; ///< time spent summing and applying updates
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, ps_msg& x) {
  return f(caf::meta::type_name("ps_msg"), x.kind, x.step, x.worker, x.stage, x.shard, x.version,
           x.lr, x.scale, x.data);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, ps_stats& x) {
  return f(caf::meta::type_name("ps_stats"), x.shard, x.version, x.pushes, x.pulls, x.bytes_in,
           x.bytes_out, x.updates, x.max_gap, x.apply_seconds);
}

/// (ps_pull_atom, int32 stage, int32 worker, int64 step, caf::actor reply_to):
/// worker asks a ps shard for its stage's pieces to run `step`; the answer is
/// a ps_msg of kind ps_params delivered to reply_to (not a response).
using ps_pull_atom = caf::atom_constant<caf::atom("pspull")>;
/// (ps_stats_atom) -> ps_stats.
using ps_stats_atom = caf::atom_constant<caf::atom("psstats")>;

} // namespace troupe::actors
