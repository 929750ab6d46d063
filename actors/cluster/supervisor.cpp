// The supervisor actor: its behaviour, a job's life from request to end,
// the join protocol and heartbeats. Reports (status_json, metrics_text), job
// inputs, spawn orders, generations (job_generation.cpp), wiring, recovery
// and stall diagnosis live beside it.
#include "actors/cluster/supervisor.hpp"

#include <unistd.h>

#include <algorithm>
#include <functional>
#include <thread>
#include <utility>

#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>

#include "actors/cluster/balancing.hpp"
#include "actors/cluster/client_events.hpp"
#include "actors/cluster/cluster_protocol.hpp"
#include "actors/cluster/job_inputs.hpp"
#include "actors/cluster/job_spec.hpp"
#include "actors/cluster/job_wiring.hpp"
#include "actors/cluster/node_agent.hpp"
#include "actors/cluster/recovery.hpp"
#include "actors/cluster/speed_probe.hpp"
#include "actors/cluster/stall_diagnosis.hpp"
#include "actors/cluster/supervisor_state.hpp"
#include "actors/cluster/supervisor_status.hpp"
#include "actors/plan/plan_memory.hpp"
#include "actors/protocol/messages.hpp"
#include "actors/protocol/system_config.hpp"
#include "actors/training/trainer.hpp"
#include "kernels/gpu.hpp"
#include "runtime/error.hpp"
#include "runtime/net/caf_error.hpp"
#include "runtime/net/security/certs.hpp"
#include "runtime/net/security/node_identity.hpp"
#include "runtime/net/transport/courier.hpp"

namespace troupe::actors {
namespace {
/// Work handed back into the supervisor from another thread (the courier's
/// io thread): never serialised.
struct deferred {
  std::function<void()> run;
};
} // namespace
} // namespace troupe::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::actors::deferred)

namespace troupe::actors {

namespace {

using tick_atom = caf::atom_constant<caf::atom("tick")>;
using join_timeout_atom = caf::atom_constant<caf::atom("jointmo")>;

caf::error refuse(const std::string& why) {
  return caf::make_error(caf::sec::invalid_argument, why);
}

void maybe_start(supervisor_actor* self);
void node_lost(supervisor_actor* self, std::string name, const std::string& why);

/// Ends the job: its current generation, then its client's watch.
void teardown(supervisor_actor* self) {
  auto& st = self->state;
  teardown_generation(self);
  if (st.job.client) {
    self->demonitor(st.job.client);
    st.job.client = nullptr;
  }
  st.job.inputs = nullptr;
  st.job.recovery.snapshot.reset();
  st.job.recovery.resume = nullptr;
  st.job.phase = job_phase::idle;
}

/// Marks the supervisor as stopping; false if it already was.
bool begin_stop(supervisor_state& st, const std::string& why) {
  if (st.stopping)
    return false;
  st.stopping = true;
  st.log->info("stopping: {}", why);
  return true;
}

/// Stops every node (the job is over) and quits.
void release_nodes_and_quit(supervisor_actor* self) {
  auto& st = self->state;
  for (auto& [name, e] : st.nodes)
    if (e.agent) {
      self->demonitor(e.agent);
      self->send(e.agent, stop_atom::value);
    }
  if (st.local_agent)
    self->send_exit(st.local_agent, caf::exit_reason::user_shutdown);
  self->quit();
}

/// The one way a job ends, done or failed: its actors go, `answer` delivers
/// its client's reply, and the supervisor stops once max_jobs jobs ended.
void end_job(supervisor_actor* self, bool failed,
             const std::function<void(caf::response_promise&)>& answer) {
  auto& st = self->state;
  auto reply = st.job.reply;
  if (failed)
    ++st.jobs_failed;
  teardown(self);
  answer(reply);
  ++st.jobs_finished;
  if (st.cfg.max_jobs > 0 && st.jobs_finished >= st.cfg.max_jobs &&
      begin_stop(st, "finished " + std::to_string(st.jobs_finished) + " job(s)"))
    release_nodes_and_quit(self);
}

/// Fails the running job, ends it, and stops every node.
void stop_supervisor(supervisor_actor* self, const std::string& why) {
  if (!begin_stop(self->state, why))
    return;
  abort_job(self, "the supervisor is stopping: " + why);
  release_nodes_and_quit(self);
}

/// After the job's inputs are known: --balance auto measures the nodes and
/// plans again, then the first generation starts.
void start_planned(supervisor_actor* self, bool balance,
                   std::shared_ptr<std::optional<runtime::checkpoint>> resume) {
  if (!balance) {
    start_generation(self, std::move(*resume));
    return;
  }
  // --balance auto: the nodes measure the job's layers first, then it is
  // planned again on the measured devices.
  const auto wire = self->state.job.wire();
  self->state.job.phase = job_phase::measuring;
  measure_job(self, [self, wire, resume] {
    auto& job = self->state.job;
    if (job.wire() != wire || job.phase != job_phase::measuring)
      return;
    try {
      replan_measured(self->state);
    } catch (const std::exception& e) {
      abort_job(self, e.what(), caf::sec::invalid_argument);
      return;
    }
    start_generation(self, std::move(*resume));
  });
}

/// Plans and validates a job, then has the nodes spawn its actors. Returns
/// an error message for bad input; the rest of the start is asynchronous.
std::string launch(supervisor_actor* self) {
  auto& st = self->state;
  auto& job = st.job;
  auto in = std::make_shared<job_inputs>();
  bool saved_plan = false;
  try {
    auto request = std::holds_alternative<job_request>(job.submitted)
                       ? std::get<job_request>(std::move(job.submitted))
                       : job_request_from_json(std::get<std::string>(job.submitted));
    saved_plan = request.saved_plan.has_value();
    job.speeds.clear();
    auto available = job_devices(st, request.opts);
    // A cluster job's loaders read the data on the nodes unless asked otherwise.
    const bool on_nodes = !st.cfg.local_node && request.opts.data_from == data_source::nodes;
    *in = prepare_job(std::move(request), available, on_nodes);
  } catch (const nlohmann::json::exception& e) {
    return std::string{"job options: "} + e.what();
  } catch (const std::exception& e) {
    return e.what();
  }
  job.requested = in->opts;
  job.opts = in->opts;
  job.topology = in->topology;
  job.recovery = {};
  job.generation = 0;
  job.probe_seconds = 0;
  job.rebalances = nlohmann::json::array();
  job.launched = clock_type::now();
  job.first_step = in->resume ? in->resume->trainer_state.value("global_step", std::int64_t{0}) : 0;
  auto resume = std::make_shared<std::optional<runtime::checkpoint>>(std::move(in->resume));
  const bool balance = !st.cfg.local_node && !saved_plan &&
                       job.opts.balance == balance_mode::automatic &&
                       job.topology.replicas * job.topology.depth() > 1;
  const bool on_nodes = in->data_from == data_source::nodes;
  job.inputs = std::move(in);
  if (!on_nodes) {
    start_planned(self, balance, std::move(resume));
    return {};
  }
  // The data is read where the loaders will run, and checked, before the
  // nodes measure or spawn anything.
  const auto wire = job.wire();
  read_data_on_nodes(self, [self, wire, balance, resume] {
    if (self->state.job.wire() == wire)
      start_planned(self, balance, resume);
  });
  return {};
}

/// Starts the waiting job once enough nodes are ready.
void maybe_start(supervisor_actor* self) {
  auto& st = self->state;
  if (st.job.phase != job_phase::waiting)
    return;
  if (!st.cfg.local_node && ready_nodes(st) < st.cfg.expect_nodes)
    return;
  auto err = launch(self);
  if (!err.empty()) {
    st.job.last_error = err;
    end_job(self, true, [&](caf::response_promise& rp) { rp.deliver(refuse(err)); });
  }
}

/// A node is gone (its agent died, or it stopped answering pings).
/// `name` by value: callers pass the key of the entry this erases.
void node_lost(supervisor_actor* self, std::string name, const std::string& why) {
  auto& st = self->state;
  auto it = st.nodes.find(name);
  if (it == st.nodes.end())
    return;
  auto agent = it->second.agent;
  const double last_contact =
      std::chrono::duration<double>(clock_type::now() - it->second.last_seen).count();
  st.nodes.erase(it);
  st.log->error("node {} lost: {}", name, why);
  if (agent) {
    // A node that comes back (SIGCONT, a healed network) reads why it was
    // dropped in its exit reason and stops its job actors.
    self->demonitor(agent);
    self->send_exit(agent,
                    caf::make_error(caf::sec::runtime_error, "dropped by the supervisor: " + why));
  }
  if (st.job.nodes.count(name)) {
    failure f;
    f.what = "node " + name + " lost: " + why;
    f.node = name;
    f.silent_seconds = last_contact;
    job_failed(self, std::move(f));
  }
}

void ping_nodes(supervisor_actor* self) {
  auto& st = self->state;
  for (auto& [name, e] : st.nodes) {
    if (!e.ready || e.ping_outstanding)
      continue;
    e.ping_outstanding = true;
    // The answer concerns this agent only: a node lost and rejoined under
    // the same name since must not be dropped by its old self's timeout.
    auto same_node = [self, name = name, agent = e.agent]() -> node_entry* {
      auto it = self->state.nodes.find(name);
      return it != self->state.nodes.end() && it->second.agent == agent ? &it->second : nullptr;
    };
    self->request(e.agent, st.cfg.ping_timeout, ping_atom::value)
        .then(
            [same_node](std::string& text) {
              auto* n = same_node();
              if (!n)
                return;
              n->ping_outstanding = false;
              n->last_seen = clock_type::now();
              try {
                n->last_ping = nlohmann::json::parse(text);
              } catch (const nlohmann::json::exception&) {
              }
            },
            [self, name = name, same_node](caf::error& err) {
              if (!same_node())
                return;
              auto timeout = self->state.cfg.ping_timeout.count();
              node_lost(self, name,
                        err == caf::sec::request_timeout
                            ? "no heartbeat reply within " + std::to_string(timeout) + " ms"
                            : runtime::describe(self->system(), err));
            });
  }
}

/// Wires a newly ready node's data plane to the supervisor's and to every
/// other ready node's; `done` runs when all connections are up or one failed.
void connect_mesh(supervisor_actor* self, const std::string& name,
                  std::function<void(std::optional<std::string>)> done) {
  auto& st = self->state;
  auto& n = st.nodes.at(name);
  struct pending {
    std::size_t left = 1; // released after every request went out
    std::optional<std::string> error;
    std::function<void(std::optional<std::string>)> done;
  };
  auto acc = std::make_shared<pending>();
  acc->done = std::move(done);
  auto one = [acc](std::optional<std::string> err) {
    if (err && !acc->error)
      acc->error = err;
    if (--acc->left == 0)
      acc->done(acc->error);
  };
  auto ask = [self, acc, one](const caf::actor& agent, const std::string& peer,
                              const std::string& host, std::uint16_t port,
                              const caf::actor& endpoint) {
    ++acc->left;
    self->request(agent, std::chrono::seconds(10), peer_atom::value, peer, host, port, endpoint)
        .then([one](bool) { one(std::nullopt); },
              [self, one](caf::error& err) { one(runtime::describe(self->system(), err)); });
  };
  if (st.cfg.courier) {
    ++acc->left;
    // The courier runs `done` on its io thread: hop back into the actor.
    auto me = caf::actor_cast<caf::actor>(self);
    st.cfg.courier->add_peer(name, n.data_host, n.data_port, n.courier,
                             [one, me](std::optional<std::string> err) {
                               caf::anon_send(me, deferred{[one, err] { one(err); }});
                             });
    ask(n.agent, st.cfg.courier->name(), st.cfg.data_host, st.cfg.courier->port(),
        st.cfg.courier->endpoint());
  }
  // Every node that has announced itself, ready or still connecting: two
  // nodes announcing at once must still meet (exactly once, here).
  for (auto& [other, e] : st.nodes) {
    if (other == name || !e.agent)
      continue;
    ask(n.agent, other, e.data_host, e.data_port, e.courier);
    ask(e.agent, name, n.data_host, n.data_port, n.courier);
  }
  one(std::nullopt);
}

/// Takes a job: a typed request (in process) or a client's options JSON.
caf::result<std::string, runtime::named_tensors>
on_run(supervisor_actor* self, std::variant<std::string, job_request> submitted,
       bool stream_events = false) {
  auto& st = self->state;
  if (st.job.phase != job_phase::idle)
    return refuse("supervisor: a job is already running");
  if (st.stopping)
    return refuse("supervisor: stopping");
  auto& job = st.job;
  job.id = st.next_job_id++;
  // Before make_response_promise(), which takes the sender out of the
  // current message.
  job.client = caf::actor_cast<caf::actor>(self->current_sender());
  job.stream_events = stream_events;
  job.last_progress_event = {};
  if (job.client)
    self->monitor(job.client);
  job.reply = self->make_response_promise();
  job.submitted = std::move(submitted);
  job.last_error.clear();
  job.progress = nlohmann::json::object();
  job.data_read_by.clear();
  job.phase = job_phase::waiting;
  auto reply = job.reply;
  if (!st.cfg.local_node && ready_nodes(st) < st.cfg.expect_nodes) {
    st.log->info("job {} waits for {} node(s) ({} ready)", job.id, st.cfg.expect_nodes,
                 ready_nodes(st));
    tell_waiting(self);
    self->delayed_send(self, st.cfg.join_wait, join_timeout_atom::value, job.id);
  }
  // Once a promise exists, the answer must go through it.
  maybe_start(self);
  return reply;
}

void on_job_done(supervisor_actor* self, std::string& report, runtime::named_tensors& params) {
  auto& st = self->state;
  if (st.job.phase != job_phase::running)
    return;
  st.log->info("job {} done", st.job.id);
  try {
    // Where it ran: for the submitting client (the trainer does not know).
    auto r = nlohmann::json::parse(report);
    r["placement"] = describe(st.job.topology);
    nlohmann::json pids = nlohmann::json::object();
    for (const auto& node : st.job.nodes)
      if (auto it = st.nodes.find(node); it != st.nodes.end())
        pids[node] = it->second.info.pid;
    r["node_pids"] = pids;
    r["recovery"] = recovery_json(st.job);
    r["balance"] = balance_json(st.job);
    const double wall = seconds_since(st.job.launched);
    const auto samples =
        (r.value("steps", std::int64_t{0}) - st.job.first_step) * r.value("batch", std::int64_t{0});
    r["job_wall_seconds"] = wall;
    r["job_samples_per_second"] = wall > 0 ? static_cast<double>(samples) / wall : 0.0;
    report = r.dump();
  } catch (const nlohmann::json::exception&) {
  }
  end_job(self, false,
          [&](caf::response_promise& rp) { rp.deliver(std::move(report), std::move(params)); });
}

/// A monitored actor or node went down.
void on_down(supervisor_actor* self, const caf::down_msg& dm) {
  auto& st = self->state;
  for (auto& [name, e] : st.nodes)
    if (e.agent && e.agent.address() == dm.source) {
      node_lost(self, name, runtime::describe(self->system(), dm.reason));
      return;
    }
  if (st.job.client && dm.source == st.job.client.address()) {
    abort_job(self, "the client that submitted job " + std::to_string(st.job.id) + " went away");
    return;
  }
  auto it = st.job.actors.find(dm.source);
  if (it == st.job.actors.end())
    return;
  // A job actor that ends normally before the job does is still a failure
  // unless it is the trainer, whose normal exit follows its job_done.
  if ((!dm.reason || dm.reason == caf::exit_reason::normal) && it->second.kind == "trainer")
    return;
  std::string why = dm.reason ? runtime::describe(self->system(), dm.reason) : "exited early";
  failure f;
  f.what = it->second.label + " failed: " + why;
  f.actor = dm.source;
  job_failed(self, std::move(f));
}

// --- join protocol (cluster_protocol.hpp) ---

/// A refused hello, join or ready: the operator sees every one in the
/// supervisor's log, with the reason the node is told. The join handlers
/// shadow refuse() with it.
caf::error refuse_node(supervisor_actor* self, const std::string& why) {
  self->state.log->warn("refused a node: {}", why);
  return refuse(why);
}

caf::result<std::string> on_hello(supervisor_actor* self, std::uint32_t version,
                                  std::uint64_t types_hash, const std::string& name) {
  auto refuse = [self](const std::string& why) { return refuse_node(self, why); };
  auto& st = self->state;
  if (st.cfg.local_node)
    return refuse("this supervisor runs a single-process job and takes no nodes");
  if (version != actors::protocol_version)
    return refuse("node " + name + " speaks protocol version " + std::to_string(version) +
                  ", this supervisor " + std::to_string(actors::protocol_version) +
                  ": run the same troupe build everywhere");
  if (types_hash != actors::message_types_hash())
    return refuse("node " + name + " registers different message types (hash " +
                  std::to_string(types_hash) + ", supervisor " +
                  std::to_string(actors::message_types_hash()) +
                  "): run the same troupe build everywhere");
  nlohmann::json c{{"nonce", st.challenges.issue()}, {"supervisor", st.cfg.name}};
  return c.dump();
}

caf::result<std::string> on_join(supervisor_actor* self, const std::string& text) {
  auto refuse = [self](const std::string& why) { return refuse_node(self, why); };
  auto& st = self->state;
  if (st.cfg.local_node)
    return refuse("this supervisor runs a single-process job and takes no nodes");
  node_description d;
  try {
    auto j = nlohmann::json::parse(text);
    d = node_description_from_json(j);
    auto nonce = j.at("nonce").get<std::string>();
    if (!st.challenges.consume(nonce))
      return refuse("node " + d.name +
                    ": join with an unknown, expired or already used "
                    "challenge (replayed handshake?)");
    if (!st.cfg.ca.empty())
      runtime::verify_node_identity(st.cfg.ca, j.at("certificate").get<std::string>(), d.name,
                                    runtime::join_proof_message(nonce, d.name, st.cfg.name),
                                    j.at("signature").get<std::string>());
  } catch (const nlohmann::json::exception& e) {
    return refuse(std::string{"join: "} + e.what());
  } catch (const std::exception& e) {
    return refuse(std::string{"join: "} + e.what());
  }
  if (!runtime::valid_node_name(d.name) || d.name == st.cfg.name || d.name == "local")
    return refuse("join: '" + d.name + "' is not a usable node name");
  if (!st.cfg.allowed_names.empty() &&
      std::find(st.cfg.allowed_names.begin(), st.cfg.allowed_names.end(), d.name) ==
          st.cfg.allowed_names.end())
    return refuse("join: node '" + d.name + "' is not in the cluster spec");
  if (st.nodes.count(d.name))
    return refuse("join: a node named '" + d.name + "' has already joined");
  st.log->info("node {} joined: pid {} on {}, {} device(s)", d.name, d.pid, d.host,
               d.devices.size());
  node_entry e;
  e.info = d;
  st.nodes.emplace(d.name, std::move(e));
  nlohmann::json w{{"key", runtime::transport::key_to_hex(st.cfg.key)},
                   {"data",
                    {{"name", st.cfg.courier ? st.cfg.courier->name() : st.cfg.name},
                     {"host", st.cfg.data_host},
                     {"port", st.cfg.courier ? st.cfg.courier->port() : 0}}}};
  return w.dump();
}

caf::result<bool> on_ready(supervisor_actor* self, const std::string& name, const caf::actor& agent,
                           const std::string& host, std::uint16_t port,
                           const caf::actor& endpoint) {
  auto& st = self->state;
  auto it = st.nodes.find(name);
  if (it == st.nodes.end() || it->second.ready || it->second.agent)
    return refuse_node(self, "ready: node '" + name + "' has not joined (or is ready already)");
  auto& e = it->second;
  e.agent = agent;
  e.courier = endpoint;
  e.data_host = host;
  e.data_port = port;
  self->monitor(agent);
  auto rp = self->make_response_promise<bool>();
  connect_mesh(self, name, [self, rp, name](std::optional<std::string> err) mutable {
    auto& st = self->state;
    auto it = st.nodes.find(name);
    if (it == st.nodes.end()) {
      rp.deliver(refuse("ready: node '" + name + "' was lost while connecting"));
      return;
    }
    if (err) {
      rp.deliver(
          caf::make_error(caf::sec::runtime_error, "data plane of node " + name + ": " + *err));
      node_lost(self, name, "data plane: " + *err);
      return;
    }
    it->second.ready = true;
    it->second.last_seen = clock_type::now();
    st.log->info("node {} ready ({} of {} expected)", name, ready_nodes(st), st.cfg.expect_nodes);
    rp.deliver(true);
    tell_waiting(self);
    maybe_start(self);
    on_node_ready(self);
  });
  return rp;
}

caf::behavior supervisor(supervisor_actor* self, supervisor_config cfg) {
  auto& st = self->state;
  st.cfg = std::move(cfg);
  st.log = runtime::logger("supervisor");
  // One line at start on what compute this process can use. No GPU is the
  // usual case (and nothing asks for one: shards run on CPU devices), so the
  // driver's reason is for --log-level debug, not for every command.
  auto gpus = kernels::probe_gpus();
  if (gpus.usable_devices == 0)
    st.log->debug("no usable GPU ({}): running on CPU devices", gpus.reason);
  else
    st.log->info("{} usable CUDA device(s); this version places layer shards on CPU "
                 "devices only",
                 gpus.usable_devices);
  if (st.cfg.local_node) {
    node_agent_config ac;
    ac.name = "local";
    st.local_agent = spawn_node_agent(self->system(), std::move(ac));
    self->link_to(st.local_agent);
  }
  // Heartbeats (cluster) and stall detection (both modes).
  self->delayed_send(self, st.cfg.ping_interval, tick_atom::value);
  self->set_down_handler([self](caf::down_msg& dm) { on_down(self, dm); });
  return {
      [self](actors::run_atom, std::string& options_json) {
        return on_run(self, std::move(options_json));
      },
      [self](actors::run_atom, job_request& request) { return on_run(self, std::move(request)); },
      [self](actors::run_atom, job_event_atom, std::string& options_json) {
        return on_run(self, std::move(options_json), true);
      },
      [self](join_timeout_atom, std::uint64_t id) {
        auto& st = self->state;
        if (st.job.id != id || st.job.phase != job_phase::waiting)
          return;
        abort_job(self,
                  "only " + std::to_string(ready_nodes(st)) + " of " +
                      std::to_string(st.cfg.expect_nodes) + " node(s) joined within " +
                      std::to_string(st.cfg.join_wait.count() / 1000) + " s",
                  caf::sec::invalid_argument);
      },
      [self](job_done_atom, std::string& report, runtime::named_tensors& params) {
        on_job_done(self, report, params);
      },
      [self](progress_atom, std::string& text) {
        try {
          auto p = nlohmann::json::parse(text);
          if (forward_progress(self, p))
            return; // an epoch's result: no step
          on_progress(self);
          if (!p.value("evaluating", false)) {
            add_busy_fractions(self->state.job.progress, p);
            self->state.job.progress = std::move(p);
          }
        } catch (const nlohmann::json::exception&) {
        }
      },
      [self](step_done_atom, std::int64_t step, double seconds) {
        on_step_done(self, step, seconds);
      },
      // Recovery (recovery.hpp): restore points and failures the trainer reports.
      [self](snapshot_atom, job_snapshot& s) { on_snapshot(self, std::move(s)); },
      [self](checkpointed_atom, std::int64_t step) { on_checkpointed(self, step); },
      [self](rebalance_atom, std::string& entry) { on_rebalance(self, entry); },
      [self](step_failed_atom, std::string& what) {
        // A failed step of a generation already torn down is old news.
        if (self->current_sender() != self->state.job.trainer.address())
          return;
        failure f;
        f.what = what;
        job_failed(self, std::move(f));
      },
      [self](replan_atom, std::uint64_t wire) { on_replan(self, wire); },
      [self](hello_atom, std::uint32_t version, std::uint64_t types_hash, std::string& name) {
        return on_hello(self, version, types_hash, name);
      },
      [self](join_atom, std::string& text) { return on_join(self, text); },
      [self](ready_atom, std::string& name, caf::actor& agent, std::string& host,
             std::uint16_t port,
             caf::actor& endpoint) { return on_ready(self, name, agent, host, port, endpoint); },
      [](deferred& d) { d.run(); },
      [](bool) {}, // a node's teardown acknowledgement
      [self](tick_atom) {
        ping_nodes(self);
        check_stall(self);
        auto& st = self->state;
        if (++st.ticks % std::max<std::int64_t>(1, 1000 / st.cfg.ping_interval.count()) == 0)
          poll_doing(self);
        self->delayed_send(self, self->state.cfg.ping_interval, tick_atom::value);
      },
      [self](status_atom) { return status_json(self->state).dump(); },
      [self](metrics_atom) { return metrics_text(self->state); },
      [self](stop_atom) { stop_supervisor(self, "told to stop"); },
  };
}

} // namespace

int ready_nodes(const supervisor_state& st) {
  int n = 0;
  for (const auto& [name, e] : st.nodes)
    n += e.ready ? 1 : 0;
  return n;
}

caf::actor track(supervisor_actor* self, caf::actor a, std::string label, std::string kind,
                 std::string node, std::optional<slot_id> slot) {
  auto& st = self->state;
  self->monitor(a);
  long pid = static_cast<long>(::getpid());
  if (auto it = st.nodes.find(node); it != st.nodes.end())
    pid = it->second.info.pid;
  st.job.actors.emplace(a.address(), job_actor{std::move(label), std::move(kind), std::move(node),
                                               pid, a.id(), slot, a});
  return a;
}

void abort_job(supervisor_actor* self, const std::string& why, caf::sec code) {
  auto& st = self->state;
  if (st.job.phase == job_phase::idle)
    return;
  st.log->error("job {} aborted: {}", st.job.id, why);
  st.job.last_error = why;
  end_job(self, true, [&](caf::response_promise& rp) { rp.deliver(caf::make_error(code, why)); });
}

caf::actor spawn_supervisor(caf::actor_system& sys, supervisor_config cfg) {
  return sys.spawn(supervisor, std::move(cfg));
}

} // namespace troupe::actors
