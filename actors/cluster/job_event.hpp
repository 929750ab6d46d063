#pragma once

// What a `troupe train --supervisor` client is told about its job while it
// runs: one typed event, sent as JSON text in one message type (job_event_atom)
// so waiting, plan, progress, epoch results, restarts and rebalances all take
// the same path. Change it for what a client can show; docs/job-events.md lists
// the fields.

#include <cstdint>
#include <string>

#include <caf/atom.hpp>
#include <nlohmann/json.hpp>

namespace troupe::actors {

/// (run_atom, job_event_atom, options_json) client -> supervisor: run the job
/// and stream its events to the sender; (job_event_atom, json) supervisor ->
/// client: one event. The reply to the run is as for (run_atom, options_json).
using job_event_atom = caf::atom_constant<caf::atom("jobevent")>;

enum class job_event_kind {
  waiting,   ///< ready, expected: the job waits for nodes
  plan,      ///< generation, text: the plan as the supervisor logs it
  progress,  ///< step, total_steps, epoch, epochs, epoch_step, epoch_steps, percent, loss, ...
  epoch,     ///< epoch, train_loss and test_accuracy / test_loss / bits_per_char / test_mse ...
  restart,   ///< generation, what, restart, max_restarts: a failure, recovery begins
  recovered, ///< generation, stages, replicas, tp, source, step: the job goes on
  rebalance, ///< step, kind ("shares" or "split"), why
  summary,   ///< the final report's headline figures (made by the client)
};

/// One event about job `job`; `fields` are the kind's own (listed above).
struct job_event {
  job_event_kind kind = job_event_kind::progress;
  std::uint64_t job = 0;
  double time = 0; ///< unix seconds where it was made
  nlohmann::json fields = nlohmann::json::object();
};

const char* to_string(job_event_kind k);

/// {"event": kind, "job", "time", ...fields} (fields flattened: one level).
nlohmann::json to_json(const job_event& e);

/// The inverse of to_json; throws runtime::input_error on an unknown kind
/// or a missing "event".
job_event job_event_from_json(const nlohmann::json& j);

/// Unix time now, in seconds.
double job_event_now();

/// A plain line for everything but progress (the client draws that itself)
/// and summary (printed as the command's result).
std::string describe(const job_event& e);

} // namespace troupe::actors
