#include "actors/training/job_trace.hpp"

#include <map>
#include <set>

#include <unistd.h>

#include "actors/ps/ps_shard.hpp"
#include "runtime/error.hpp"

namespace troupe::actors {

namespace {

/// The tracks of a job's trace as they are added, and what the metadata
/// counts of them.
struct trace_parts {
  std::vector<runtime::trace_event> events;
  std::vector<runtime::trace_track> tracks;
  std::map<std::int64_t, std::set<std::string>> roles; ///< per process, what ran there
  nlohmann::json summary = nlohmann::json::array();
  std::int64_t dropped_total = 0;

  /// Adds one track's events; the recorder's "events dropped" marker stays
  /// on the track (where recording stopped) and is counted into the metadata.
  void add(std::vector<runtime::trace_event> track_events, std::int64_t pid, std::int64_t tid,
           const std::string& name, const std::string& role) {
    std::int64_t dropped = 0;
    for (auto& e : track_events) {
      if (e.category == "trace" && e.name == "events dropped")
        if (const auto* n = e.arg("dropped"); n && std::holds_alternative<std::int64_t>(*n))
          dropped += std::get<std::int64_t>(*n);
      events.push_back(std::move(e));
    }
    dropped_total += dropped;
    roles[pid].insert(role);
    tracks.push_back({pid, tid, "", name});
    summary.push_back({{"track", name},
                       {"pid", pid},
                       {"tid", tid},
                       {"events", track_events.size()},
                       {"dropped", dropped}});
  }

  /// A shard's track, "`who` (node N/device, pid P)", from its reply; none
  /// without events (and so no pid to name it by).
  void add_shard(const std::string& reply, std::int64_t tid, const std::string& who,
                 const device_slot& d) {
    auto track_events = runtime::trace_events_from_json_text(reply);
    if (track_events.empty())
      return;
    const auto pid = track_events.front().pid;
    add(std::move(track_events), pid, tid,
        who + " (node " + d.node + "/" + d.name + ", pid " + std::to_string(pid) + ")",
        "node " + d.node);
  }

  /// Names every process by what ran in it.
  void name_processes() {
    for (auto& t : tracks) {
      std::string who;
      for (const auto& r : roles[t.pid])
        who += (who.empty() ? "" : ", ") + r;
      t.process_name = "troupe " + who + " (pid " + std::to_string(t.pid) + ")";
    }
  }
};

void check_replies(const plan& topology, const std::vector<std::string>& stage_events,
                   const std::vector<std::string>& ps_events) {
  if (ps_events.size() != topology.ps_shards.size())
    throw runtime::input_error("trace: " + std::to_string(ps_events.size()) +
                               " ps shard replies for " +
                               std::to_string(topology.ps_shards.size()) + " ps shards");
  if (stage_events.size() != topology.stages.size())
    throw runtime::input_error("trace: " + std::to_string(stage_events.size()) +
                               " stage replies for " + std::to_string(topology.stages.size()) +
                               " stages");
}

} // namespace

nlohmann::json job_trace(const plan& topology, const std::vector<std::string>& stage_events,
                         const std::vector<std::string>& ps_events,
                         const runtime::trace_recorder& trainer, nlohmann::json run) {
  check_replies(topology, stage_events, ps_events);
  trace_parts parts;
  std::vector<runtime::trace_event> own;
  for (const auto& e : trainer.to_json())
    own.push_back(runtime::trace_event_from_json(e));
  const auto trainer_pid = static_cast<std::int64_t>(::getpid());
  parts.add(std::move(own), trainer_pid, 0, "trainer (pid " + std::to_string(trainer_pid) + ")",
            "supervisor");
  const auto grid = topology.grid();
  for (std::size_t k = 0; k < stage_events.size(); ++k) {
    const auto& slot = topology.stages[k];
    parts.add_shard(stage_events[k], static_cast<std::int64_t>(k) + 1, grid.name(slot.id()),
                    topology.devices.at(slot.device));
  }
  for (std::size_t i = 0; i < ps_events.size(); ++i) {
    const auto& slot = topology.ps_shards[i];
    parts.add_shard(ps_events[i], ps_trace_tid(slot.shard),
                    "ps shard " + std::to_string(slot.shard), topology.devices.at(slot.device));
  }
  parts.name_processes();
  if (!run.is_object())
    run = nlohmann::json::object();
  run["tracks"] = std::move(parts.summary);
  run["capacity_per_track"] = trainer.capacity();
  run["dropped_events"] = parts.dropped_total;
  return runtime::chrome_trace(std::move(parts.events), parts.tracks, std::move(run));
}

} // namespace troupe::actors
