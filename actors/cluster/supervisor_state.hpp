#pragma once

// The supervisor actor's state, shared by its parts (supervisor.cpp,
// job_wiring.cpp, supervisor_status.cpp): change it when the supervisor
// learns to keep something new about its nodes or its job.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <variant>
#include <vector>

#include <caf/actor.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/response_promise.hpp>
#include <caf/sec.hpp>
#include <caf/stateful_actor.hpp>
#include <nlohmann/json.hpp>

#include "actors/cluster/cluster_protocol.hpp"
#include "actors/cluster/job_inputs.hpp"
#include "actors/cluster/job_phase.hpp"
#include "actors/cluster/job_request.hpp"
#include "actors/cluster/recovery_state.hpp"
#include "actors/cluster/supervisor.hpp"
#include "actors/plan/balance.hpp"
#include "actors/plan/plan.hpp"
#include "actors/plan/rebalancer.hpp"
#include "actors/plan/slot.hpp"
#include "actors/plan/train_options.hpp"
#include "runtime/log.hpp"
#include "runtime/net/security/node_identity.hpp"

namespace troupe::actors {

using clock_type = std::chrono::steady_clock;

/// Seconds from `t` until now.
inline double seconds_since(clock_type::time_point t) {
  return std::chrono::duration<double>(clock_type::now() - t).count();
}

/// A node that proved its identity and (once ready) offers its devices.
struct node_entry {
  node_description info;
  caf::actor agent;   ///< set by ready
  caf::actor courier; ///< its data plane's descriptor endpoint
  std::string data_host;
  std::uint16_t data_port = 0;
  bool ready = false;
  bool ping_outstanding = false;
  clock_type::time_point last_seen = clock_type::now();
  nlohmann::json last_ping = nlohmann::json::object();
};

/// One job actor: what /status shows, what a failure names, and which layer
/// shard slot it serves (how /metrics finds a stage's node).
struct job_actor {
  std::string label;
  std::string kind;
  std::string node;
  long pid = 0; ///< of its node's process
  caf::actor_id id = 0;
  std::optional<slot_id> slot;
  caf::actor handle; ///< null once the job ended
  /// Its last answer to doing_atom (trainer and layer shards, polled every
  /// second while the job runs): its step, action and what it waits for.
  nlohmann::json doing = nullptr;
};

struct job_state {
  std::uint64_t id = 0;
  /// Placements of the job so far: every (re)placement is a new generation,
  /// with actors of its own and its own transfer id (wire()), so nothing of
  /// an older one (a node stopped and resumed) reaches the new one.
  std::uint32_t generation = 0;
  job_phase phase = job_phase::idle;
  caf::response_promise reply;
  caf::actor client; ///< who submitted it: the job is aborted if it goes away
  /// The client asked for job events (client_events.hpp); when the last
  /// progress event went (they are rate-limited).
  bool stream_events = false;
  clock_type::time_point last_progress_event{};
  /// What was submitted: the typed request (in process), or a client's
  /// options JSON, read once when the job starts.
  std::variant<std::string, job_request> submitted;
  train_options requested; ///< as submitted: the degrees a shrunk job grows back to
  train_options opts;      ///< the current generation's
  plan topology;
  std::shared_ptr<job_inputs> inputs; ///< data sets, read once for every generation
  /// --data-from nodes: the agents that have read and checked this job's
  /// data, by node (read_data_on_nodes asks only the others; a node that
  /// joined again under its name has another agent and reads it again).
  std::map<std::string, caf::actor_addr> data_read_by;
  caf::actor trainer; ///< the current generation's
  std::map<caf::actor_addr, job_actor> actors;
  std::set<std::string> nodes;
  nlohmann::json progress = nlohmann::json::object();
  std::vector<job_actor> last_actors; ///< of the previous job, for /status and /metrics
  std::string last_error;
  recovery_state recovery;
  /// --balance auto: each device's measurement of this job's layers, by node
  /// then device name (taken before the first generation; every re-plan
  /// uses it), what the probe cost, and every rebalance while it ran
  /// ({step, kind, why, old, new}).
  std::map<std::string, std::map<std::string, device_speed>> speeds;
  double probe_seconds = 0;
  nlohmann::json rebalances = nlohmann::json::array();
  /// Each split rebalance's move, and when: the next generations' trainers
  /// do not undo a recent one (balancing.hpp).
  std::vector<std::pair<clock_type::time_point, split_move>> split_moves;
  /// When it was launched and the step it started from: the report's
  /// job_samples_per_second counts every generation, its measuring and its
  /// re-plans (the trainer's own figures are its generation's).
  clock_type::time_point launched = clock_type::now();
  std::int64_t first_step = 0;

  /// The id the current generation's actors and transfers carry: the node
  /// agents tear down by it, the data planes drop late transfers by it.
  std::uint64_t wire() const { return (id << 16) | generation; }
};

struct supervisor_state {
  supervisor_config cfg;
  std::shared_ptr<spdlog::logger> log = runtime::logger("supervisor");
  std::map<std::string, node_entry> nodes; ///< joined (and maybe ready) nodes
  runtime::challenge_book challenges;
  caf::actor local_agent; ///< single-process mode
  job_state job;
  std::uint64_t next_job_id = 1;
  int jobs_finished = 0;
  int jobs_failed = 0;
  bool stopping = false;
  std::int64_t ticks = 0; ///< heartbeat ticks so far (some work runs every n-th)
  static inline const char* name = "supervisor";
};

using supervisor_actor = caf::stateful_actor<supervisor_state>;

/// Nodes that joined and are ready for jobs.
int ready_nodes(const supervisor_state& st);

/// Monitors `a` as an actor of the running job, on `node`.
caf::actor track(supervisor_actor* self, caf::actor a, std::string label, std::string kind,
                 std::string node, std::optional<slot_id> slot = std::nullopt);

/// Fails the running job with `why` (which names the actor or node), with no
/// recovery: bad input, a client gone, restarts exhausted. Failures of a
/// running job's actors and nodes go to recovery.hpp's job_failed first.
void abort_job(supervisor_actor* self, const std::string& why,
               caf::sec code = caf::sec::runtime_error);

// A job's generations (job_generation.cpp), for supervisor.cpp and recovery.cpp.

/// Ends the current generation's actors and has its nodes drop what they
/// spawned for it; the job itself (its client, its reply) goes on.
void teardown_generation(supervisor_actor* self);

/// The devices a job with `opts` can be placed on now.
std::vector<device_slot> job_devices(const supervisor_state& st, const train_options& opts);

/// Starts the next generation of the job on job.topology with job.opts,
/// restoring `resume` (none: from the initial parameters). With --data-from
/// nodes its loaders' nodes read the data first (read_data_on_nodes).
void start_generation(supervisor_actor* self, std::optional<runtime::checkpoint> resume);

/// --data-from nodes: the nodes that host the current topology's loaders read
/// the job's data (each off its agent's thread) and `then` runs once every
/// summary agrees with the others and with what the job knew; the first
/// reading gives job.inputs its data_summary (use_data_summary). A node that
/// cannot read the data, or reads other data, aborts the job as bad input,
/// naming the node and the path.
void read_data_on_nodes(supervisor_actor* self, std::function<void()> then);

} // namespace troupe::actors
