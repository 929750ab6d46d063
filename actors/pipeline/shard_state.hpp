#pragma once

// The layer shard's state and the helpers its handler files share
// (layer_shard.cpp: steps, inputs, the end of a step, wiring;
// shard_data_parallel.cpp: the dp group, all-reduce and broadcast). Internal
// to the shard: layer_shard.hpp is its interface.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/error.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_response_promise.hpp>

#include "actors/pipeline/gradient_buckets.hpp"
#include "actors/pipeline/ps_worker.hpp"
#include "actors/pipeline/shard_compute.hpp"
#include "actors/pipeline/shard_config.hpp"
#include "actors/pipeline/shard_trace.hpp"
#include "actors/pipeline/step_runner.hpp"
#include "actors/protocol/messages.hpp"
#include "runtime/named_tensors.hpp"

namespace troupe::actors::detail {

/// How far a training step's end has got (without parameter servers: the
/// device runs update_work; with them: ps_worker's push and pull).
struct step_end {
  bool norm_requested = false;      ///< clipping: sum of squares computed or on its way
  std::optional<double> clip_total; ///< clipping: the trainer's global sum of squares
  bool optimizer_done = false;      ///< the parameters for the next step are in place
};

struct shard_state {
  shard_config cfg;
  std::string label; ///< "layer_shard <slot name>": errors and logs name the shard by it
  std::shared_ptr<compute_state> compute;
  caf::actor device, prev, next, trainer;
  /// prev's and next's compute state when they run in this process (wiring).
  std::weak_ptr<compute_state> prev_local, next_local;
  std::optional<actors::step_msg> step;
  std::shared_ptr<step_run> run; ///< the step's actions, handed to the device
  bool busy = false;             ///< the device holds the run or a task
  bool broken = false;           ///< a step failed (step_failed); only salvage and teardown follow
  step_end end;
  // Data parallelism (cfg.all_reduces()).
  caf::actor group; ///< this shard's collective rank
  allreduce_progress allreduce;
  std::int64_t broadcasts = 0; ///< parameter broadcasts so far (their op ids)
  ps_worker ps;                ///< parameter servers (cfg.uses_ps())
  actors::stage_report report;
  shard_trace trace;
  /// Recovery: salvage requests that came while the optimizer was updating
  /// the parameters, answered when it is done.
  std::vector<caf::typed_response_promise<runtime::named_tensors, runtime::named_tensors>>
      salvage_waiting;
  static inline const char* name = "layer_shard";
};

using shard_actor = caf::stateful_actor<shard_state>;

/// The shard fails (it quits with `what`, named by its label).
void fail(shard_actor* self, const std::string& what);

/// After the device finished the run or a task, or an all-reduce or the
/// clipping total came back (or the parameter servers answered): the rest
/// of the step's end, then its report.
void advance(shard_actor* self);

/// The step cannot finish because a collective failed (a replica was lost):
/// the shard tells the trainer and stays alive, its parameters those of its
/// last update, so recovery can salvage them (salvage_atom).
void step_failed(shard_actor* self, const std::string& what, const std::string& why);
void step_failed(shard_actor* self, const std::string& what, const caf::error& err);

} // namespace troupe::actors::detail
