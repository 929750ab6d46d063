#include "actors/cluster/node_agent.hpp"

#include <unistd.h>

#include <vector>

#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>
#include <nlohmann/json.hpp>

#include "actors/cluster/actor_registry.hpp"
#include "actors/cluster/speed_probe.hpp"
#include "runtime/error.hpp"
#include "runtime/log.hpp"
#include "runtime/net/caf_error.hpp"
#include "runtime/net/transport/courier.hpp"

namespace troupe::actors {

namespace {

/// The actors a node spawned for its jobs. Shared with the agent's cleanup
/// functor, which runs after the agent's state is destroyed.
using spawned_list = std::shared_ptr<std::vector<caf::actor>>;

struct agent_state {
  node_agent_config cfg;
  std::shared_ptr<spdlog::logger> log = runtime::logger("node");
  spawned_list spawned = std::make_shared<std::vector<caf::actor>>();
  std::shared_ptr<node_data> data;
  std::vector<caf::typed_response_promise<std::string>>
      hung_probes; ///< injected "hang" faults, never answered
  static inline const char* name = "node_agent";
};

using agent_actor = caf::stateful_actor<agent_state>;

void teardown(const spawned_list& spawned) {
  for (auto& a : *spawned)
    caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  spawned->clear();
}

void teardown(agent_actor* self) {
  teardown(self->state.spawned);
}

/// Spawns an actor of `kind` for `job` from its factory (actor_registry.hpp).
caf::result<caf::actor> spawn_actor(agent_actor* self, std::uint64_t job, const std::string& kind,
                                    const std::string& config_json) {
  auto& st = self->state;
  // The job's actors send through a view that stamps the job.
  auto courier = st.cfg.courier ? st.cfg.courier->for_job(job) : nullptr;
  const auto& factories = actor_factories();
  auto factory = factories.find(kind);
  if (factory == factories.end())
    return caf::make_error(caf::sec::invalid_argument,
                           "node " + st.cfg.name + ": unknown actor kind '" + kind +
                               "' (known: " + known_actor_kinds() + ")");
  try {
    auto a = factory->second(nlohmann::json::parse(config_json),
                             node_context{self->system(), std::move(courier), st.data});
    self->monitor(a);
    st.spawned->push_back(a);
    st.log->debug("{}: spawned {}", st.cfg.name, kind);
    return a;
  } catch (const std::exception& e) {
    return caf::make_error(caf::sec::invalid_argument,
                           "node " + st.cfg.name + ": cannot spawn " + kind + ": " + e.what());
  }
}

/// The reader of read_data: answers one request, then ends. A function with
/// the data as its argument, not a capturing lambda: CAF 0.17 binds a null
/// reference for the empty argument tuple of the latter (UBSan reports it).
caf::behavior data_reader(caf::event_based_actor* r, std::shared_ptr<node_data> data) {
  return {[r, data](read_data_atom, const std::string& text) -> caf::result<std::string> {
    r->quit();
    try {
      return data->get(nlohmann::json::parse(text))->summary.dump();
    } catch (const std::exception& e) {
      return caf::make_error(caf::sec::invalid_argument, e.what());
    }
  }};
}

/// Reads the job's data on a thread of its own (a large file must not hold
/// up the agent's heartbeats) and answers its summary.
caf::result<std::string> read_data(agent_actor* self, const std::string& spec) {
  auto reader = self->spawn<caf::detached>(data_reader, self->state.data);
  auto rp = self->make_response_promise<std::string>();
  self->request(reader, caf::infinite, read_data_atom::value, spec)
      .then([rp](std::string& summary) mutable { rp.deliver(std::move(summary)); },
            [rp](caf::error& err) mutable { rp.deliver(std::move(err)); });
  return rp;
}

caf::behavior node_agent(agent_actor* self, node_agent_config cfg) {
  self->state.cfg = std::move(cfg);
  self->state.data = std::make_shared<node_data>(self->state.cfg.name, self->state.cfg.data_paths);
  if (self->state.cfg.supervisor)
    self->monitor(self->state.cfg.supervisor);
  self->set_down_handler([self](caf::down_msg& dm) {
    auto& spawned = *self->state.spawned;
    if (dm.source != self->state.cfg.supervisor.address()) {
      std::erase_if(spawned, [&](const caf::actor& a) { return a.address() == dm.source; });
      return;
    }
    auto why = runtime::describe(self->system(), dm.reason);
    self->state.log->error("{}: the supervisor went away: {}; stopping", self->state.cfg.name, why);
    teardown(self);
    self->quit(caf::make_error(caf::sec::runtime_error, "the supervisor went away: " + why));
  });
  // However the agent ends (an exit message from the supervisor included),
  // its job actors end with it. The functor runs after the state is gone:
  // it holds the list itself, never `self`.
  self->attach_functor([spawned = self->state.spawned] { teardown(spawned); });
  return {
      [self](spawn_atom, std::uint64_t job, const std::string& kind,
             const std::string& config_json) { return spawn_actor(self, job, kind, config_json); },
      [self](teardown_atom, std::uint64_t job) {
        teardown(self);
        if (self->state.cfg.courier)
          self->state.cfg.courier->end_job(job);
        return true;
      },
      [self](peer_atom, const std::string& name, const std::string& host, std::uint16_t port,
             const caf::actor& endpoint) -> caf::result<bool> {
        auto& st = self->state;
        if (!st.cfg.courier)
          return caf::make_error(caf::sec::invalid_argument,
                                 "node " + st.cfg.name + " has no data plane");
        auto rp = self->make_response_promise<bool>();
        st.cfg.courier->add_peer(
            name, host, port, endpoint,
            [rp, me = st.cfg.name, name](std::optional<std::string> err) mutable {
              if (err)
                rp.deliver(caf::make_error(caf::sec::runtime_error,
                                           "node " + me + ": data plane to " + name + ": " + *err));
              else
                rp.deliver(true);
            });
        return rp;
      },
      [self](probe_atom, const std::string& request, const caf::actor& sink) {
        return answer_probe(self, request, sink, self->state.cfg.courier, self->state.hung_probes);
      },
      [self](read_data_atom, const std::string& spec) { return read_data(self, spec); },
      [self](ping_atom) {
        auto& st = self->state;
        nlohmann::json j{{"name", st.cfg.name},
                         {"pid", static_cast<long>(::getpid())},
                         {"actors", st.spawned->size()}};
        if (st.cfg.courier)
          j.update(transport_status(*st.cfg.courier));
        return j.dump();
      },
      [self](stop_atom) {
        self->state.log->info("{}: stopped by the supervisor", self->state.cfg.name);
        teardown(self);
        self->quit();
      },
  };
}

} // namespace

nlohmann::json transport_status(const runtime::transport::courier& c) {
  auto counters = [](const runtime::transport::transport_counters& t) {
    return nlohmann::json{{"messages", t.messages}, {"bytes", t.bytes}};
  };
  nlohmann::json peers = nlohmann::json::object();
  for (const auto& [peer, pc] : c.peer_counters())
    peers[peer] = {{"bytes_sent", pc.bytes_sent},
                   {"bytes_received", pc.bytes_received},
                   {"frames_sent", pc.frames_sent},
                   {"frames_received", pc.frames_received}};
  return {{"caf", counters(c.caf_counters())},
          {"dataplane", counters(c.dataplane_counters())},
          {"dataplane_peers", peers},
          {"late_transfers", c.late_transfers()}};
}

caf::actor spawn_node_agent(caf::actor_system& sys, node_agent_config cfg) {
  return sys.spawn(node_agent, std::move(cfg));
}

} // namespace troupe::actors
