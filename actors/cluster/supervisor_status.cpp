#include "actors/cluster/supervisor_status.hpp"

#include "actors/cluster/balancing.hpp"
#include "actors/cluster/recovery.hpp"

#include <unistd.h>

#include <algorithm>
#include <tuple>
#include <utility>

#include "actors/cluster/node_agent.hpp"
#include "runtime/net/transport/courier.hpp"
#include "runtime/telemetry/prometheus.hpp"

namespace troupe::actors {

namespace {

using mt = runtime::prometheus_builder::metric_type;
using labels = std::vector<runtime::prometheus_builder::label>;

/// The node of the shard in `slot`, in the running job or else the previous one.
std::string node_of(const job_state& job, slot_id slot) {
  for (const auto& [addr, a] : job.actors)
    if (a.kind == "layer_shard" && a.slot == slot)
      return a.node;
  for (const auto& a : job.last_actors)
    if (a.kind == "layer_shard" && a.slot == slot)
      return a.node;
  return {};
}

void job_metrics(runtime::prometheus_builder& b, const supervisor_state& st) {
  b.family("troupe_nodes", mt::gauge, "Nodes that joined and are ready")
      .sample({}, ready_nodes(st));
  b.family("troupe_jobs_finished_total", mt::counter, "Jobs ended (done or failed)")
      .sample({}, st.jobs_finished);
  b.family("troupe_jobs_failed_total", mt::counter, "Jobs that failed").sample({}, st.jobs_failed);
  b.family("troupe_job_running", mt::gauge, "1 while a job runs")
      .sample({}, st.job.phase == job_phase::running ? 1 : 0);
  const auto& p = st.job.progress;
  b.family("troupe_job_step", mt::gauge, "Training steps done by the running job")
      .sample({}, p.value("step", 0.0));
  b.family("troupe_job_step_seconds", mt::gauge, "Duration of the last training step")
      .sample({}, p.value("step_seconds", 0.0));
  b.family("troupe_job_samples_per_second", mt::gauge, "Samples per second of the last step")
      .sample({}, p.value("samples_per_second", 0.0));
  b.family("troupe_job_epoch", mt::gauge, "Epoch (from 1) the running job is in")
      .sample({}, p.value("epoch", 0.0));
  b.family("troupe_job_total_steps", mt::gauge, "Training steps the running job will take")
      .sample({}, p.value("total_steps", 0.0));
  b.family("troupe_job_loss", mt::gauge,
           "Mean training loss of the running epoch so far (the report's final_loss at its end)")
      .sample({}, p.value("loss", 0.0));
  b.family("troupe_job_learning_rate", mt::gauge, "Learning rate of the last step")
      .sample({}, p.value("lr", 0.0));
}

/// Per actor: what each stage sent to its peers.
void stage_metrics(runtime::prometheus_builder& b, const job_state& job) {
  std::vector<std::pair<labels, nlohmann::json>> stages;
  const auto grid = job.topology.grid();
  if (job.progress.contains("stages"))
    for (const auto& s : job.progress.at("stages")) {
      slot_id slot{s.value("replica", 0), s.value("stage", 0), s.value("tp_rank", 0)};
      stages.push_back(
          {{{"actor", "layer_shard " + grid.name(slot)}, {"node", node_of(job, slot)}}, s});
    }
  struct family {
    const char* name;
    const char* help;
    const char* field;
  };
  static const family families[] = {
      {"troupe_actor_messages_sent_total", "Activations and gradients an actor sent to its peers",
       "messages_sent"},
      {"troupe_actor_bytes_sent_total", "Tensor bytes an actor sent to its peers", "bytes_sent"},
      {"troupe_actor_compute_seconds_total", "Device time of an actor's kernels",
       "compute_seconds"},
      {"troupe_actor_allreduce_bytes_total",
       "Gradient bytes an actor handed to all-reduces (data parallelism)", "allreduce_bytes"},
      {"troupe_actor_allreduce_seconds_total",
       "Time from an actor's first gradient bucket launched to its last one reduced, summed "
       "over steps",
       "allreduce_seconds"},
      {"troupe_actor_ps_bytes_total",
       "Gradient bytes an actor pushed to and parameter bytes it pulled from the parameter "
       "servers",
       "ps_bytes"},
  };
  for (const auto& f : families) {
    b.family(f.name, mt::counter, f.help);
    for (const auto& [l, s] : stages)
      b.sample(l, s.value(f.field, 0.0));
  }
  b.family("troupe_stage_busy_ratio", mt::gauge,
           "Fraction of the last step an actor's device spent in kernels (1 - idle)");
  for (const auto& [l, s] : stages)
    if (s.contains("busy_fraction"))
      b.sample(l, s.at("busy_fraction").get<double>());
}

/// Per process and transport: how tensor messages left it.
void transport_metrics(runtime::prometheus_builder& b, const supervisor_state& st) {
  std::vector<std::pair<std::string, nlohmann::json>> processes;
  processes.emplace_back(st.cfg.name, st.cfg.courier ? transport_status(*st.cfg.courier)
                                                     : nlohmann::json::object());
  for (const auto& [name, e] : st.nodes)
    processes.emplace_back(name, e.last_ping);
  auto per_transport = [&](const char* name, const char* help, const char* field) {
    b.family(name, mt::counter, help);
    for (const auto& [node, t] : processes)
      for (const char* transport : {"caf", "dataplane"})
        if (t.contains(transport))
          b.sample({{"node", node}, {"transport", transport}}, t[transport].value(field, 0.0));
  };
  per_transport("troupe_transport_messages_total",
                "Tensor messages a process sent, by transport (caf inline or dataplane)",
                "messages");
  per_transport("troupe_transport_bytes_total", "Tensor payload bytes a process sent, by transport",
                "bytes");
  auto per_peer = [&](const char* name, const char* help, const char* field) {
    b.family(name, mt::counter, help);
    for (const auto& [node, t] : processes)
      if (t.contains("dataplane_peers"))
        for (const auto& [peer, c] : t["dataplane_peers"].items())
          b.sample({{"node", node}, {"peer", peer}}, c.value(field, 0.0));
  };
  per_peer("troupe_dataplane_peer_bytes_sent_total",
           "Bytes written to a data-plane peer, frame headers included", "bytes_sent");
  per_peer("troupe_dataplane_peer_bytes_received_total",
           "Bytes read from a data-plane peer, frame headers included", "bytes_received");
}

nlohmann::json nodes_json(const supervisor_state& st) {
  nlohmann::json nodes = nlohmann::json::array();
  auto now = clock_type::now();
  for (const auto& [name, e] : st.nodes) {
    auto j = to_json(e.info);
    j["ready"] = e.ready;
    j["data_plane"] = {{"host", e.data_host}, {"port", e.data_port}};
    j["last_heartbeat_ms"] =
        std::chrono::duration_cast<std::chrono::milliseconds>(now - e.last_seen).count();
    j["transport"] = e.last_ping;
    nodes.push_back(j);
  }
  return nodes;
}

} // namespace

nlohmann::json actors_json(const std::vector<job_actor>& actors) {
  nlohmann::json r = nlohmann::json::array();
  for (const auto& a : actors)
    r.push_back({{"label", a.label},
                 {"kind", a.kind},
                 {"node", a.node},
                 {"pid", a.pid},
                 {"id", a.id},
                 {"doing", a.doing}});
  return r;
}

std::vector<job_actor> current_actors(const job_state& job) {
  std::vector<job_actor> r;
  for (const auto& [addr, a] : job.actors)
    r.push_back(a);
  return r;
}

nlohmann::json status_json(const supervisor_state& st) {
  auto self_transport =
      st.cfg.courier ? transport_status(*st.cfg.courier) : nlohmann::json::object();
  return {{"supervisor",
           {{"name", st.cfg.name},
            {"pid", static_cast<long>(::getpid())},
            {"mode", st.cfg.local_node ? "single-process" : "cluster"},
            {"expect_nodes", st.cfg.expect_nodes},
            {"transport", self_transport}}},
          {"nodes", nodes_json(st)},
          {"job",
           {{"id", st.job.id},
            {"phase", to_string(st.job.phase)},
            {"actors", actors_json(current_actors(st.job))},
            {"previous_actors", actors_json(st.job.last_actors)},
            {"progress", st.job.progress},
            {"last_error", st.job.last_error},
            {"generation", st.job.generation},
            {"recovery", recovery_json(st.job)},
            {"balance", balance_json(st.job)}}},
          {"jobs_finished", st.jobs_finished},
          {"jobs_failed", st.jobs_failed}};
}

void add_busy_fractions(const nlohmann::json& previous, nlohmann::json& next) {
  if (!next.contains("stages") || !previous.contains("stages")) // (previous: maybe null)
    return;
  const double wall = next.value("train_seconds", 0.0) - previous.value("train_seconds", 0.0);
  if (!(wall > 0))
    return;
  auto key = [](const nlohmann::json& s) {
    return std::make_tuple(s.value("replica", 0), s.value("stage", 0), s.value("tp_rank", 0));
  };
  for (auto& s : next.at("stages"))
    for (const auto& p : previous.at("stages"))
      if (key(p) == key(s)) {
        // A new generation restarts the counters: no figure for its first step.
        const double busy = s.value("compute_seconds", 0.0) - p.value("compute_seconds", 0.0);
        if (busy >= 0)
          s["busy_fraction"] = std::clamp(busy / wall, 0.0, 1.0);
        break;
      }
}

std::string metrics_text(const supervisor_state& st) {
  runtime::prometheus_builder b;
  job_metrics(b, st);
  stage_metrics(b, st.job);
  transport_metrics(b, st);
  return b.take();
}

} // namespace troupe::actors
