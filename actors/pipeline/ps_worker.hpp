#pragma once

// A layer shard as a parameter-server worker (cfg.uses_ps()): pushing the
// step's gradients, pulling the next step's parameters and putting them in
// place, in place of the all-reduce and the optimizer. The protocol itself is
// ps_client's (actors/ps/ps_client.hpp); this is the shard's step around it.

#include <chrono>
#include <cstdint>
#include <optional>
#include <vector>

#include <caf/actor.hpp>

#include "actors/pipeline/shard_compute.hpp"
#include "actors/ps/ps_client.hpp"
#include "actors/protocol/messages.hpp"
#include "runtime/telemetry/trace_recorder.hpp"

namespace troupe::actors {

/// Every method that can fail throws std::runtime_error with the message
/// the shard fails with.
struct ps_worker {
  ps_client client;
  bool wired = false;  ///< ps_group_atom came
  bool pushed = false; ///< this step's gradients went out, at pushed_at
  std::chrono::steady_clock::time_point pushed_at;
  std::uint64_t bytes_mark = 0;  ///< the client's byte counters before this step's push
  std::int64_t step_samples = 0; ///< this worker's training samples in the step

  void begin_step();
  /// (ps_group_atom): the ps shards, by shard index; `self` gets their replies.
  void wire(const shard_config& cfg, std::vector<caf::actor> shards, caf::actor self);
  /// At the end of a step's actions (the device is idle): pushes the
  /// gradients and asks for the next step's parameters. In sync mode the
  /// gradients are the global batch's share (scale 1: the ps shard sums the
  /// workers); otherwise each push is applied alone, as this worker's mean
  /// gradient (scaled from 1 / global batch to 1 / its own samples). True
  /// when there is nothing to pull (a stage without parameters): the update
  /// is done.
  bool push(compute_state& c, const actors::step_msg& m, ps_mode mode,
            runtime::trace_recorder& trace);
  /// A pulled part arrived; true once every ps shard answered.
  bool receive(actors::ps_msg&& m);
  /// Every ps shard answered: the next step's parameters go in place. Adds
  /// the step's ps bytes and seconds to `report`; returns after_update()'s
  /// digest.
  std::optional<std::uint64_t> apply(compute_state& c, const actors::step_msg& m,
                                     actors::stage_report& report, runtime::trace_recorder& trace);
};

} // namespace troupe::actors
