#pragma once

// Balancing a plan over unlike devices (--balance auto). The nodes measure
// the job's own layers on their devices (device_slot::layer_seconds); from
// those this file derives the cost model the planner uses: each stage's cost
// on the device it lands on, the stage boundaries that minimise the slowest
// stage, each replica's share of the batch in proportion to its throughput,
// and the step time the plan predicts. CAF-free, so every rule is tested
// alone (tests/plan/balance_test.cpp).

#include <cstdint>
#include <string>
#include <vector>

#include "actors/plan/plan.hpp"
#include "models/partitioner.hpp"

namespace troupe::actors {

/// One device's measurement of a job's layers (device_slot::layer_seconds).
struct device_speed {
  std::vector<double> layer_seconds;
  std::int64_t microbatch = 0;
  double link_bytes_per_second = 0; ///< its node's data plane (0: not measured)
};

/// Measurements that cannot be trusted: one line per device naming its node
/// and what is wrong (not measured, a probe that timed out, zero, negative,
/// non-finite or absurd times, the wrong layer count, a spread of more than
/// 1000x between devices). `layers` is the model's layer count.
std::vector<std::string> measurement_problems(const std::vector<device_slot>& devices,
                                              std::size_t layers);

/// True when every device of `p` that holds a stage has usable measurements.
bool measured(const plan& p);

/// The cost of layer l on the device of stage k of replica r, tensor-parallel
/// rank t, in seconds per micro-batch of the profile's size
/// (device_slot::profile_microbatch); tensor-parallel ranks share the stage's
/// layers, so each costs 1/tp of them.
double layer_cost(const plan& p, int replica, int stage, int tp_rank, std::size_t layer);

/// The stage boundaries (contiguous, non-empty) minimising the slowest stage
/// when stage k runs on the devices of stage k of every replica (the slowest
/// of them counts). Needs measured(p), virtual_stages 1.
std::vector<models::layer_range> measured_split(const plan& p);

/// A replica's compute seconds per step for n samples: fixed + per_sample * n.
/// The fixed part is what it pays per step whatever its load: its
/// gradients' all-reduce (or push and pull), at its node's link speed.
struct replica_cost {
  double fixed = 0;
  double per_sample = 0;
};

/// What placing layers on the stages of `replica` costs: each layer on its
/// stage's device, and each cut's activation and gradient at that device's
/// link speed, per micro-batch of the profile's size.
models::stage_costs replica_costs(const plan& p, int replica);

/// A replica's step as a function of its samples, with the plan's split:
/// the pipeline (one pass through every stage plus micro-batches - 1 of the
/// slowest, per sample) and its inputs crossing from the loader per sample;
/// its gradients' exchange fixed.
replica_cost replica_model(const plan& p, int replica);

/// The shares (summing to 1, each at least min_share) that make every
/// replica finish its part of a batch of `batch` samples at once.
std::vector<double> equal_finish(const std::vector<replica_cost>& costs, double batch,
                                 double min_share);

/// The step time the plan predicts for a global batch of `batch` with its
/// batch shares: the slowest replica's pipeline step; 0 when not measured.
double predicted_step_seconds(const plan& p, std::int64_t batch);

/// Reorders the stage devices of a single pipeline (dp 1, tp 1) so the
/// measured split's slowest stage is the fastest possible: faster devices
/// take the heavier stages. Tries every order for up to 7 stages.
void order_stage_devices(plan& p);

/// Applies --balance auto to a plan whose devices are measured: stage order,
/// split (unless opts.split) and batch shares (unless opts.batch_shares),
/// then sets p.predicted_step_seconds. Leaves an unmeasured plan as it is.
void balance_plan(plan& p, const train_options& opts);

} // namespace troupe::actors
