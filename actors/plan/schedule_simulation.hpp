#pragma once

#include <string>
#include <vector>

#include "actors/plan/schedule.hpp"

namespace troupe::actors {

/// What running every device's action list together gives (see simulate()).
struct schedule_simulation {
  bool completed = false;          ///< every list is valid and ran to its end
  std::string error;               ///< otherwise: the invalid action, or where each device is stuck
  int makespan = 0;                ///< time steps until the last action finished
  std::vector<int> peak_in_flight; ///< per device: most micro-batch-chunks held at once
  /// The timed overload's figures (the other's too, in time steps): when the
  /// last device finished, and per device the time it spent working.
  double time = 0;
  std::vector<double> busy;

  /// Idle share of the devices' time until `time`: 1 - sum(busy) / (devices x time).
  double bubble() const;
};

/// Executes the action lists of all `stages` devices (schedules[d] for device
/// d, each holding `virtual_stages` chunks) of one step over `microbatches`
/// micro-batches, as the layer shards would: each device runs its list in
/// order, one action at a time, an action starting as soon as its inputs
/// exist. With s = virtual_stage(layout, stages, device, chunk) the global
/// virtual stage, F(mb, s) needs F(mb, s - 1), B(mb, s) needs F(mb, s) and
/// B(mb, s + 1) (the last stage's backward only its own forward) and W(mb, s)
/// needs B(mb, s). A forward takes `forward_steps` time steps, a backward
/// `backward_steps` and a weight action `weight_steps`.
///
/// First checks every list: each (micro-batch, chunk) forward and backward
/// exactly once, in range, each forward before its backward; a list with any
/// weight action (a split schedule) also needs each weight exactly once,
/// after its backward. Pure: for tests and for comparing schedules (bubbles,
/// memory) without running anything.
schedule_simulation simulate(const std::vector<std::vector<action>>& schedules, int stages,
                             int virtual_stages, int microbatches, int forward_steps = 1,
                             int backward_steps = 1, int weight_steps = 1,
                             chunk_layout layout = chunk_layout::looped);

/// Measured durations per device and chunk (see the overload below).
struct action_costs {
  std::vector<std::vector<double>> forward;  ///< [device][chunk], positive
  std::vector<std::vector<double>> backward; ///< [device][chunk], positive
  std::vector<std::vector<double>> weight;   ///< [device][chunk]; empty without W actions
  std::vector<double> tail;                  ///< [device] after its last action; optional
};

/// The same with measured durations, for split schedules too, with the
/// chunks laid out as `layout`.
schedule_simulation simulate(const std::vector<std::vector<action>>& schedules, int stages,
                             int virtual_stages, int microbatches, const action_costs& costs,
                             chunk_layout layout = chunk_layout::looped);

/// The same with measured durations, so that an unbalanced pipeline has a
/// prediction too (`troupe bench pipeline`): forward_cost[d][v] and
/// backward_cost[d][v] are one forward and one backward of chunk v on device
/// d, tail_cost[d] (optional) what d does after its last action (the
/// optimizer). Costs must be positive (tails may be 0); the figures are in
/// their unit.
schedule_simulation simulate(const std::vector<std::vector<action>>& schedules, int stages,
                             int virtual_stages, int microbatches,
                             const std::vector<std::vector<double>>& forward_cost,
                             const std::vector<std::vector<double>>& backward_cost,
                             const std::vector<double>& tail_cost = {});

} // namespace troupe::actors
