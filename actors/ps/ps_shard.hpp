#pragma once

// A parameter-server shard (TensorFlow ParameterServerStrategy, ps-lite): it
// holds its pieces of the model's parameters (ps_assignment.hpp) with their
// optimizer state, applies the workers' gradients and serves parameters.
// Workers are the data-parallel replicas' layer shards, each talking to the
// ps shards through a ps_client (ps_client.hpp).
//
// Protocol (W workers, indices 0..W-1; versions per stage = updates applied,
// starting at first_step in sync mode and first_step * W otherwise):
//   ps_msg{kind ps_push, step s, worker w, stage k, lr, scale, data}
//       worker w's gradients for stage k's pieces on this shard, flat in piece
//       order (ps_assignment::pieces_of). Each worker pushes each stage's
//       steps in order, first_step first, step s only after it pulled the
//       parameters for s (so a worker's pushes arrive in order even though
//       large messages have no FIFO).
//       sync:  once all W pushes of (k, s) are in, their sum (worker order
//              0..W-1, so bitwise deterministic) times scale is one optimizer
//              step with lr; the stage's version becomes s + 1. Every push of
//              a step must carry the same lr and scale.
//       async, ssp: each push is one optimizer step (gradient times scale:
//              the worker makes it its mean gradient) on arrival; version + 1.
//   (ps_pull_atom, int32 stage, int32 worker, int64 step, caf::actor reply_to)
//       worker w wants the stage's pieces to run `step`. Served once the
//       worker's own push of step - 1 is in (the pull may overtake it) and:
//       sync: version >= step; async: nothing more; ssp: the slowest worker
//       has pushed at least step - K steps. The answer is
//       ps_msg{kind ps_params, step, worker, stage, shard, version, data} sent
//       to reply_to through the courier (large data over the data plane). A
//       pull never sees half an update: updates run inside one message
//       handler and the data is a snapshot (copy on write). A pull for a step
//       more than one past the worker's pushes breaks the protocol.
//   (ps_stats_atom) -> actors::ps_stats
//   (get_params_atom) -> named_tensors: pieces by ps_piece::name(), flat; meta
//       "shard" and "version.<stage>" per stage
//   (get_state_atom) -> named_tensors: optimizer state "<piece>.<kind>"; meta
//       "steps.<stage>" per stage, and "steps" when all its stages agree
//   (set_params_atom, named_tensors) -> bool    before the first push only:
//   (set_state_atom, named_tensors) -> bool     resume from split_pieces() of a
//       checkpoint (state meta: "steps.<stage>" or "steps")
//   (get_trace_atom) -> std::string  trace events (cfg.trace) on track
//       ps_trace_tid(shard): push instants, update and pull-wait spans
//
// Workers start step first_step from the model's initial parameters (same spec
// and seed as this shard's init) or the checkpoint, so nobody pulls before it.
//
// Failure: anything wrong (a malformed or unexpected message, an optimizer
// error, the injected fault) ends the shard with sec::runtime_error and the
// text "ps_shard <i>: <what>". The shard does not monitor workers: in async
// and ssp modes a dead worker would leave pulls waiting on it (ssp) or stop
// pushing, but the supervisor monitors every job actor and aborts the whole
// job when one dies, tearing the shards down.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <nlohmann/json.hpp>

#include "actors/plan/ps_assignment.hpp"
#include "actors/plan/ps_mode.hpp"
#include "models/layers/model_spec.hpp"

namespace troupe::runtime::transport {
class courier;
}

namespace troupe::actors {

struct ps_shard_config {
  int shard = 0;
  /// Every shard's pieces; this one serves those with piece.shard == shard.
  ps_assignment assignment;
  int workers = 1;
  ps_mode mode = ps_mode::sync;
  int staleness = 0; ///< ssp's K
  /// models::make_optimizer's JSON (one optimizer per stage on this shard).
  nlohmann::json optimizer = nlohmann::json{{"type", "sgd"}};
  /// The pieces start as the model's init with this seed (models::instantiate).
  models::model_spec model;
  std::uint64_t seed = 0;
  /// The first step workers push (> 0 when resuming from a checkpoint).
  std::int64_t first_step = 0;
  /// Fault injection: the shard fails when asked to apply this step (-1: never).
  std::int64_t fault_step = -1;
  bool trace = false; ///< record a timeline for (get_trace_atom)
  /// How params replies reach workers in other processes; null: plain CAF
  /// messages (single process). Not part of the JSON form: the node agent
  /// that spawns the shard supplies its own.
  std::shared_ptr<runtime::transport::courier> courier;
};

/// The JSON form a supervisor sends to a node agent (everything but the courier).
nlohmann::json to_json(const ps_shard_config& c);
/// Throws runtime::input_error for a malformed config.
ps_shard_config ps_shard_config_from_json(const nlohmann::json& j);

/// Trace track (tid) of ps shard `shard` in its process: clear of the layer
/// shards' tracks (replica * stages + stage + 1).
std::int64_t ps_trace_tid(int shard);

/// Builds the shard's pieces (instantiates the model once, keeps its slices)
/// and spawns it. Throws runtime::input_error for an invalid config (shard or
/// workers out of range, an assignment that does not match the model, a bad
/// optimizer config).
caf::actor spawn_ps_shard(caf::actor_system& sys, ps_shard_config cfg);

} // namespace troupe::actors
