#pragma once

// How much memory a plan asks of each device, estimated from the plan alone
// (nothing runs): `troupe plan` prints it, so a topology that cannot fit is
// seen before a job is started.

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "actors/plan/plan.hpp"
#include "actors/plan/train_options.hpp"

namespace troupe::actors {

/// What the estimate needs that a plan does not hold: the optimizer (how much
/// state it keeps per parameter) and the global batch (the micro-batch size).
/// They belong to the job, not to the topology, so a saved plan runs with any
/// optimizer or batch. The defaults are train_options' defaults.
struct memory_assumptions {
  std::string optimizer = "adam"; ///< sgd | adam | adamw
  float momentum = 0;             ///< sgd: a buffer per parameter when > 0
  std::int64_t batch = 64;        ///< the global batch

  /// The assumptions of a job run with `opts`.
  static memory_assumptions of(const train_options& opts);
  /// Optimizer state tensors per parameter: adam and adamw 2 (exp_avg,
  /// exp_avg_sq), sgd 1 with momentum (momentum_buffer), else 0.
  int state_slots() const;
};

/// Bytes one device holds for a step, by kind (all tensors f32).
struct device_memory {
  std::uint64_t parameters = 0;
  /// Layer shards: one per parameter. Parameter servers: one buffer of their
  /// pieces (the summed or the incoming push).
  std::uint64_t gradients = 0;
  /// state_slots() x the parameters of whoever runs the optimizer: the layer
  /// shards, or the parameter-server shards when the plan has any (the
  /// workers then keep none).
  std::uint64_t optimizer_state = 0;
  /// Layer outputs kept for backward at the schedule's peak: walking the
  /// device's action list, each forward of chunk c adds the per-sample
  /// output elements of c's layers x its replica's micro-batch size (rounded
  /// up), each backward removes them. Tensor-parallel ranks are counted with
  /// the full (replicated) outputs, an upper bound inside a column/row pair.
  std::uint64_t activations = 0;

  std::uint64_t total() const { return parameters + gradients + optimizer_state + activations; }
  friend bool operator==(const device_memory&, const device_memory&) = default;
};

/// The estimate for every device of the plan, indexed as plan::devices (a
/// device holding several shards gets their sum; an unused one zeros). A
/// tensor-parallel rank's parameters are its slices (models::tp_layout); a
/// parameter-server shard's are its pieces (ps_assignment::bytes_per_shard).
/// Throws runtime::input_error for assumptions that make no sense (unknown
/// optimizer, batch < 1).
std::vector<device_memory> estimate_memory(const plan& p, const memory_assumptions& a);

/// to_json(p) with the memory section estimated under `a` (to_json(p) uses
/// memory_assumptions{}): "memory": {"assumptions": {...}, "devices": [{"device",
/// "node", "parameters", "gradients", "optimizer_state", "activations",
/// "total"}...]}. plan_from_json ignores the section (it is derived).
nlohmann::json to_json(const plan& p, const memory_assumptions& a);

/// describe(p) with the memory section estimated under `a`.
std::string describe(const plan& p, const memory_assumptions& a);

} // namespace troupe::actors
