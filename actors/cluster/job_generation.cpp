// A job's generations: each (re)placement of the job is spawned, wired and
// started here, and torn down here (recovery.hpp re-plans between them).
#include <algorithm>
#include <chrono>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "actors/cluster/client_events.hpp"
#include "actors/cluster/job_spec.hpp"
#include "actors/cluster/job_wiring.hpp"
#include "actors/cluster/node_agent.hpp"
#include "actors/cluster/recovery.hpp"
#include "actors/cluster/speed_probe.hpp"
#include "actors/cluster/supervisor_state.hpp"
#include "actors/cluster/supervisor_status.hpp"
#include "actors/plan/plan_memory.hpp"
#include "runtime/net/caf_error.hpp"
#include "runtime/net/transport/courier.hpp"

namespace troupe::actors {

namespace {

/// The devices of the cluster's ready nodes.
std::vector<device_slot> cluster_devices(const supervisor_state& st) {
  std::vector<device_slot> r;
  for (const auto& [name, e] : st.nodes) {
    if (!e.ready)
      continue;
    for (std::size_t i = 0; i < e.info.devices.size(); ++i) {
      const auto& d = e.info.devices[i];
      r.push_back(
          {d.name, name, d.where, d.threads, i < e.info.gflops.size() ? e.info.gflops[i] : 0.0});
    }
  }
  return r;
}

caf::actor agent_of(supervisor_actor* self, const std::string& node) {
  auto& st = self->state;
  if (node == "local")
    return st.local_agent;
  auto it = st.nodes.find(node);
  return it == st.nodes.end() ? caf::actor{} : it->second.agent;
}

/// Has the nodes spawn every actor of `orders` for the current generation,
/// all at once; once all are there the job is wired and its trainer starts,
/// restoring `resume`.
void spawn_job(supervisor_actor* self, const std::vector<spawn_order>& orders,
               std::shared_ptr<job_inputs> in, std::optional<runtime::checkpoint> resume) {
  auto& job = self->state.job;
  auto acc = std::make_shared<job_actors>(orders);
  auto wire = job.wire();
  auto starting = [self, wire] {
    return self->state.job.wire() == wire && self->state.job.phase == job_phase::starting;
  };
  auto restore = std::make_shared<std::optional<runtime::checkpoint>>(std::move(resume));
  auto spawned = [self, acc, in, starting, restore] {
    if (--acc->left == 0 && starting())
      wire_job(self, *acc, [self, acc, in, starting, restore] {
        if (!starting())
          return;
        start_trainer(self, *acc, *in, std::move(*restore));
        generation_running(self);
      });
  };
  for (const auto& o : orders) {
    job.nodes.insert(o.node);
    self->request(agent_of(self, o.node), std::chrono::seconds(30), spawn_atom::value, wire, o.kind,
                  o.config.dump())
        .then(
            [self, acc, o, spawned, starting](caf::actor& a) {
              if (!starting())
                return;
              acc->at(o) = track(self, a, o.label, o.kind, o.node, o.slot);
              spawned();
            },
            [self, wire, label = o.label, node = o.node](caf::error& err) {
              if (self->state.job.wire() != wire)
                return;
              failure f;
              f.what = "spawning " + label + ": " + runtime::describe(self->system(), err);
              f.node = node;
              job_failed(self, std::move(f));
            });
  }
}

} // namespace

void teardown_generation(supervisor_actor* self) {
  auto& st = self->state;
  auto& job = st.job;
  if (!job.actors.empty()) {
    job.last_actors = current_actors(job);
    for (auto& a : job.last_actors)
      a.handle = nullptr;
  }
  for (auto& [addr, a] : job.actors) {
    self->demonitor(a.handle);
    self->send_exit(a.handle, caf::exit_reason::user_shutdown);
  }
  for (const auto& node : job.nodes)
    if (auto agent = agent_of(self, node))
      self->send(agent, teardown_atom::value, job.wire());
  if (st.cfg.courier)
    st.cfg.courier->end_job(job.wire());
  job.actors.clear();
  job.nodes.clear();
  job.trainer = nullptr;
}

std::vector<device_slot> job_devices(const supervisor_state& st, const train_options& opts) {
  return st.cfg.local_node ? local_devices(opts, std::max(1u, std::thread::hardware_concurrency()))
                           : with_speeds(st.job, cluster_devices(st));
}

void start_generation(supervisor_actor* self, std::optional<runtime::checkpoint> resume) {
  auto& st = self->state;
  auto& job = st.job;
  ++job.generation;
  const auto& topology = job.topology;
  st.log->info("job {}: {} on {} stage(s) x {} replica(s), {} micro-batch(es){}", job.id,
               topology.strategy(), topology.depth(), topology.replicas, topology.microbatches,
               job.generation > 1 ? ", generation " + std::to_string(job.generation) : "");
  tell_client(self, job_event_kind::plan,
              {{"generation", job.generation},
               {"text", fmt::format("job {}: {} on {} stage(s) x {} replica(s), {} micro-batch(es)"
                                    "\nplan ({} partition):\n{}\n{}",
                                    job.id, topology.strategy(), topology.depth(),
                                    topology.replicas, topology.microbatches, topology.partition,
                                    describe(topology, memory_assumptions::of(job.opts)),
                                    recovery_summary(job.opts))}});
  // Shown with progress output; benchmarks running many jobs keep it quiet.
  st.log->log(job.opts.progress ? spdlog::level::info : spdlog::level::debug,
              "plan ({} partition):\n{}\n{}", topology.partition,
              describe(topology, memory_assumptions::of(job.opts)), recovery_summary(job.opts));
  job.phase = job_phase::starting;
  // The workers' first push is of the step the checkpoint stopped at.
  const auto first_step = resume ? resume->trainer_state.value("global_step", std::int64_t{0}) : 0;
  auto opts = job.opts;
  if (job.generation > 1)
    opts.fault.clear(); // an injected fault strikes the first generation only
  auto orders = job_spawns(topology, opts, first_step);
  if (job.inputs->data_from == data_source::supervisor) {
    spawn_job(self, orders, job.inputs, std::move(resume));
    return;
  }
  // The loaders' nodes (this placement's: a re-plan may move a replica) read
  // the data before anything is spawned.
  const auto wire = job.wire();
  auto restore = std::make_shared<std::optional<runtime::checkpoint>>(std::move(resume));
  read_data_on_nodes(self, [self, wire, orders = std::move(orders), restore]() mutable {
    auto& job = self->state.job;
    if (job.wire() != wire)
      return;
    auto loaders = loader_spawns(job.topology, data_spec(*job.inputs), job.inputs->data_summary);
    orders.insert(orders.end(), loaders.begin(), loaders.end());
    spawn_job(self, orders, job.inputs, std::move(*restore));
  });
}

void read_data_on_nodes(supervisor_actor* self, std::function<void()> then) {
  auto& job = self->state.job;
  const auto wire = job.wire();
  const auto spec = data_spec(*job.inputs);
  // Every node that will host a loader (replica r's first stage, rank 0)
  // and has not read the data yet.
  std::set<std::string> nodes;
  for (int r = 0; r < job.topology.replicas; ++r) {
    const auto& node = job.topology.devices[job.topology.slot(r, 0, 0).device].node;
    auto it = job.data_read_by.find(node);
    if (it == job.data_read_by.end() || it->second != agent_of(self, node).address())
      nodes.insert(node);
  }
  if (nodes.empty()) {
    then();
    return;
  }
  const auto previous = job.phase;
  job.phase = job_phase::reading;
  struct pending {
    std::size_t left;
    std::vector<std::pair<std::string, nlohmann::json>> summaries;
  };
  auto acc = std::make_shared<pending>(pending{nodes.size(), {}});
  auto current = [self, wire] {
    return self->state.job.wire() == wire && self->state.job.phase == job_phase::reading;
  };
  auto all_read = [self, acc, then = std::move(then), previous] {
    auto& job = self->state.job;
    for (const auto& [node, s] : acc->summaries) {
      auto known = job.inputs->data_summary.is_null() ? acc->summaries.front().second
                                                      : job.inputs->data_summary;
      if (!same_data(s, known)) {
        abort_job(self,
                  "node " + node + " read other data than node " + acc->summaries.front().first +
                      " (--data-from nodes needs the same files on every node): " + s.dump() +
                      " vs " + known.dump(),
                  caf::sec::invalid_argument);
        return;
      }
    }
    if (job.inputs->data_summary.is_null()) {
      try {
        use_data_summary(*job.inputs, acc->summaries.front().second);
      } catch (const std::exception& e) {
        abort_job(self, e.what(), caf::sec::invalid_argument);
        return;
      }
      job.opts.loss = job.requested.loss = job.inputs->opts.loss;
      job.opts.evaluate = job.requested.evaluate = job.inputs->opts.evaluate;
    }
    for (const auto& [node, s] : acc->summaries) {
      job.data_read_by[node] = agent_of(self, node).address();
      self->state.log->info("job {}: node {} read {} ({} training, {} test samples{})", job.id,
                            node, s.value("train_name", std::string{}), s.value("train_samples", 0),
                            s.value("test_samples", 0),
                            s.at("paths").empty() ? "" : ", paths " + s.at("paths").dump());
    }
    job.phase = previous;
    then();
  };
  for (const auto& node : nodes)
    self->request(agent_of(self, node), caf::infinite, read_data_atom::value, spec.dump())
        .then(
            [acc, node, current, all_read](std::string& summary) {
              if (!current())
                return;
              acc->summaries.emplace_back(node, nlohmann::json::parse(summary));
              if (--acc->left == 0)
                all_read();
            },
            [self, current](caf::error& err) {
              if (current())
                abort_job(self, runtime::describe(self->system(), err), caf::sec::invalid_argument);
            });
}

} // namespace troupe::actors
