#pragma once

#include <algorithm>
#include <cstddef>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "actors/plan/ps_assignment.hpp"
#include "actors/plan/ps_mode.hpp"
#include "actors/plan/schedule.hpp"
#include "actors/plan/slot.hpp"
#include "actors/plan/train_options.hpp"
#include "models/layers/model_spec.hpp"
#include "models/partitioner.hpp"
#include "runtime/device.hpp"

namespace troupe::actors {

/// A compute resource the plan puts actors on.
struct device_slot {
  std::string name;           ///< "cpu:0", "cpu:1", ... (unique within a node)
  std::string node = "local"; ///< the node agent hosting it
  runtime::device where = runtime::device::cpu();
  int threads = 1;   ///< BLAS threads of this device
  double gflops = 0; ///< measured sgemm GFLOP/s (0: not measured)
  /// --balance auto: the job's own layers measured on this device, forward +
  /// backward seconds of each per micro-batch of `profile_microbatch`
  /// samples, over several CPU-quota periods (empty: not measured).
  std::vector<double> layer_seconds = {};
  std::int64_t profile_microbatch = 0;
  /// Its node's data plane: bytes per second to the supervisor's process
  /// (0: not measured; then transfers are not charged).
  double link_bytes_per_second = 0;
};

/// One pipeline stage: a layer shard actor on a device. It holds one chunk of
/// layers, or with virtual stages (interleaved and zbv schedules) several:
/// chunk v of stage d is global virtual stage
/// virtual_stage(layout_of(schedule), stages, d, v).
struct stage_slot {
  int stage = 0;
  std::vector<models::layer_range> chunks;
  std::size_t device = 0; ///< index into plan::devices
  int replica = 0;        ///< data-parallel replica (pipeline) it belongs to
  int tp_rank = 0;        ///< its slice of the stage's tensor-parallel layers
  slot_id id() const { return {replica, stage, tp_rank}; }
};

/// A parameter-server shard actor on a CPU device.
struct ps_slot {
  int shard = 0;
  std::size_t device = 0; ///< index into plan::devices
};

/// A topology as data: which actors, on which devices, wired how. Planning
/// (make_plan) is separate from placement on a cluster and from execution (the
/// supervisor), so each can be tested alone.
struct plan {
  models::model_spec model;
  std::vector<device_slot> devices;
  /// Every replica's pipeline, replica-major, then stage, then tensor-parallel
  /// rank: slot (r * depth() + k) * tp + t is tensor-parallel rank t of stage
  /// k of replica r; within a replica stage k feeds stage k + 1 (rank t to
  /// rank t). Stage k of every replica holds the same layers.
  std::vector<stage_slot> stages;
  int microbatches = 1; ///< per replica and step
  schedule_kind schedule = schedule_kind::gpipe;
  int virtual_stages = 1; ///< chunks per stage
  /// Data-parallel replicas (each a whole pipeline of depth() stages).
  int replicas = 1;
  /// Tensor-parallel degree: layer shards per stage, each holding 1/tp of the
  /// split layers (models::tp_layout) and all of the replicated ones.
  int tp = 1;
  /// Parameter servers in place of the replicas' all-reduce (empty: none):
  /// the shards, how the parameters are spread over them, and the mode.
  std::vector<ps_slot> ps_shards;
  ps_assignment ps_layout;
  actors::ps_mode ps_mode = actors::ps_mode::sync;
  int staleness = 0;
  /// Each replica's share of the global batch (weights summing to 1).
  std::vector<double> batch_shares{1.0};
  /// How the layers were split: "flops", "measured" or "explicit", and the
  /// per-layer costs it balanced (FLOPs, or seconds per micro-batch).
  std::string partition = "flops";
  std::vector<double> layer_costs;
  /// automatic: balanced by the devices' measured speed (actors/plan/balance.hpp),
  /// with the step time that predicts for the global batch; off: not measured.
  balance_mode balance = balance_mode::off;
  double predicted_step_seconds = 0;

  /// Pipeline depth: stages per replica.
  int depth() const {
    return static_cast<int>(stages.size()) / std::max(1, replicas * std::max(1, tp));
  }
  /// The layout of `stages` (slot_grid::index, slot_grid::name).
  slot_grid grid() const { return {std::max(1, replicas), depth(), std::max(1, tp)}; }
  /// Index into `stages` of tensor-parallel rank t of stage k of replica r.
  std::size_t slot_index(int replica, int stage, int tp_rank = 0) const {
    return grid().index({replica, stage, tp_rank});
  }
  const stage_slot& slot(int replica, int stage, int tp_rank = 0) const {
    return stages.at(slot_index(replica, stage, tp_rank));
  }
  /// "single", "gradient-accumulation", "layer-placement" (stages > 1, one
  /// micro-batch) or "pipeline"; with replicas "data-parallel" or
  /// "<pipeline strategy>+data-parallel"; then "+tensor-parallel" and
  /// "+parameter-server" when used.
  std::string strategy() const;
};

/// The devices of a single-process job on `cores` local CPU cores: one CPU
/// device per stage of every replica on node "local", sharing the threads
/// (opts.threads, or `cores`) evenly.
std::vector<device_slot> local_devices(const train_options& opts, unsigned cores);

/// Plans a training job on the devices of a cluster: the model from the zoo,
/// split into opts.stages * opts.virtual_stages contiguous chunks (opts.split,
/// or balanced by per-layer cost: counted FLOPs, or with opts.partition
/// "measured" each layer's forward + backward time on a micro-batch,
/// measured here, and the stage devices' measured GFLOP/s when all are
/// known), stage k (holding chunks k, k + stages, ...) on the
/// k-th device of `available` taken round-robin across nodes (so consecutive
/// stages land on different nodes when there are several); with opts.dp
/// replicas, stage k of replica r on the (r * stages + k)-th (so with one
/// device per node, each replica of a single stage gets its own node). A
/// plan needs one device per stage and replica. Throws runtime::input_error
/// for an unknown model, an impossible split (fewer layers than chunks) or
/// too few devices.
plan make_plan(const train_options& opts, const std::vector<device_slot>& available);

/// make_plan(opts, local_devices(opts, cores)).
plan make_plan(const train_options& opts, unsigned cores);

/// A saved plan (train_options::plan) made to run on `available`: every
/// device it names (node and device name) must be there; a local run
/// (`available` on node "local") takes the plan's local devices as they are.
/// Throws runtime::input_error naming a missing device.
plan place_saved_plan(plan p, const std::vector<device_slot>& available);

/// The options as the plan has them: its degrees (stages, dp, tp, ps,
/// micro-batches, schedule, virtual stages, ps mode) replace opts', so the
/// rest of the job sees one topology. Validates the result.
void adopt_plan_degrees(train_options& opts, const plan& p);

nlohmann::json to_json(const plan& p);
/// A plan saved by to_json (`troupe plan --save`), checked for consistency
/// (slot counts, device indices, layer ranges covering the model). Throws
/// runtime::input_error naming what is wrong.
plan plan_from_json(const nlohmann::json& j);
/// One line per stage: "stage 0: layers [0, 2) dense relu on local/cpu:0 (1 thread)"; with
/// virtual stages one range per chunk: "stage 0: layers [0, 1) dense | [2, 3) dense on ...";
/// "replica r " and " tp t" when there are several. Then the collective groups, the
/// parameter servers and the memory per device (actors/plan/plan_memory.hpp; to_json's
/// "memory" too, both under memory_assumptions{}).
std::string describe(const plan& p);

} // namespace troupe::actors
