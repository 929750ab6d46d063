#pragma once

// The state of a parameter-server shard actor (ps_shard.hpp): its stages'
// pieces, clocks, pending pushes and waiting pulls. Shared by the actor
// (ps_shard.cpp), the push/pull protocol (ps_push_pull.cpp) and checkpoint
// access (ps_checkpoint.cpp); change it when a stage needs new bookkeeping.

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>

#include "actors/ps/ps_shard.hpp"
#include "models/layers/parameter.hpp"
#include "models/train/optimizer.hpp"
#include "actors/protocol/messages.hpp"
#include "runtime/telemetry/trace_recorder.hpp"

namespace troupe::actors::ps_detail {

using runtime::tensor;
using steady = std::chrono::steady_clock;

/// A worker's pull that waits for its condition (ps_shard.hpp).
struct pull_request {
  std::int32_t worker = 0;
  std::int64_t step = 0;
  caf::actor reply_to;
  steady::time_point arrived;
};

/// The pushes of one step of one stage (sync mode), by worker.
struct pending_step {
  std::vector<tensor> grads;
  int have = 0;
  float lr = 0;
  float scale = 1;
};

/// One stage's pieces on this shard with their optimizer.
struct stage_data {
  std::int32_t stage = 0;
  std::vector<ps_piece> layout; ///< flat order
  /// One parameter per piece, named ps_piece::name(), values flat [length].
  std::vector<models::parameter> params;
  std::vector<models::parameter*> ptrs;
  std::unique_ptr<models::optimizer> opt;
  std::int64_t numel = 0;
  std::int64_t version = 0;
  /// The values at `version` as one flat tensor, shared by every reply until
  /// the next update (undefined: build it on the next pull).
  tensor snapshot;
  /// Per worker, the next step it pushes (= steps pushed, from step 0 on).
  std::vector<std::int64_t> clock;
  std::map<std::int64_t, pending_step> pending; ///< sync
  std::vector<pull_request> pulls;              ///< waiting, in arrival order
};

struct ps_state {
  ps_shard_config cfg;
  std::vector<stage_data> stages; ///< ascending stage
  actors::ps_stats stats;
  runtime::trace_recorder trace;
  bool started = false; ///< a push came (set_params / set_state refused after)
  static inline const char* name = "ps_shard";
};

using ps_actor = caf::stateful_actor<ps_state>;

/// "ps_shard <i>".
std::string label(const ps_shard_config& c);

/// Ends the shard with an error naming what was wrong.
caf::error fail(ps_actor* self, const std::string& what);

} // namespace troupe::actors::ps_detail
