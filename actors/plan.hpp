#pragma once

#include <algorithm>
#include <cstddef>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "actors/schedule.hpp"
#include "actors/train_options.hpp"
#include "models/model_spec.hpp"
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
};

/// One pipeline stage: a layer shard actor on a device. It holds one chunk of
/// layers, or with virtual stages (interleaved schedule) several: chunk v of
/// stage d is global virtual stage v * stages + d.
struct stage_slot {
  int stage = 0;
  std::vector<models::layer_range> chunks;
  std::size_t device = 0; ///< index into plan::devices
  int replica = 0;        ///< data-parallel replica (pipeline) it belongs to
};

/// A topology as data: which actors, on which devices, wired how. Planning
/// (make_plan) is separate from placement on a cluster and from execution (the
/// supervisor), so each can be tested alone.
struct plan {
  models::model_spec model;
  std::vector<device_slot> devices;
  /// Every replica's pipeline, replica-major: slot r * depth() + k is stage k
  /// of replica r; within a replica stage k feeds stage k + 1. Stage k of
  /// every replica holds the same layers.
  std::vector<stage_slot> stages;
  int microbatches = 1; ///< per replica and step
  schedule_kind schedule = schedule_kind::gpipe;
  int virtual_stages = 1; ///< chunks per stage
  /// Data-parallel replicas (each a whole pipeline of depth() stages).
  int replicas = 1;
  /// Each replica's share of the global batch (weights summing to 1).
  std::vector<double> batch_shares{1.0};
  /// How the layers were split: "flops", "measured" or "explicit", and the
  /// per-layer costs it balanced (FLOPs, or seconds per micro-batch).
  std::string partition = "flops";
  std::vector<double> layer_costs;

  /// Pipeline depth: stages per replica.
  int depth() const { return static_cast<int>(stages.size()) / std::max(1, replicas); }
  /// The slot of stage k of replica r.
  const stage_slot& slot(int replica, int stage) const {
    return stages.at(static_cast<std::size_t>(replica * depth() + stage));
  }
  /// "single", "gradient-accumulation", "layer-placement" (stages > 1, one
  /// micro-batch) or "pipeline"; with replicas "data-parallel" or
  /// "<pipeline strategy>+data-parallel".
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

nlohmann::json to_json(const plan& p);
/// One line per stage: "stage 0: layers [0, 2) dense relu on local/cpu:0 (1 thread)"; with
/// virtual stages one range per chunk: "stage 0: layers [0, 1) dense | [2, 3) dense on ...".
std::string describe(const plan& p);

} // namespace troupe::actors
