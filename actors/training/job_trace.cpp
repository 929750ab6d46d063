#include "actors/training/job_trace.hpp"

#include <map>
#include <set>

#include <unistd.h>

#include "actors/ps/ps_shard.hpp"
#include "runtime/error.hpp"

namespace troupe::actors {

nlohmann::json job_trace(const plan& topology, const std::vector<std::string>& stage_events,
                         const std::vector<std::string>& ps_events,
                         const runtime::trace_recorder& trainer, nlohmann::json run) {
  if (ps_events.size() != topology.ps_shards.size())
    throw runtime::input_error("trace: " + std::to_string(ps_events.size()) +
                               " ps shard replies for " +
                               std::to_string(topology.ps_shards.size()) + " ps shards");
  if (stage_events.size() != topology.stages.size())
    throw runtime::input_error("trace: " + std::to_string(stage_events.size()) +
                               " stage replies for " + std::to_string(topology.stages.size()) +
                               " stages");
  std::vector<runtime::trace_event> events;
  std::vector<runtime::trace_track> tracks;
  std::map<std::int64_t, std::set<std::string>> roles; ///< per process, what ran there
  auto summary = nlohmann::json::array();
  std::int64_t dropped_total = 0;
  // Adds one track's events; the recorder's "events dropped" marker stays on
  // the track (where recording stopped) and is counted into the metadata.
  auto add = [&](std::vector<runtime::trace_event> track_events, std::int64_t pid, std::int64_t tid,
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
  };
  std::vector<runtime::trace_event> own;
  for (const auto& e : trainer.to_json())
    own.push_back(runtime::trace_event_from_json(e));
  const auto trainer_pid = static_cast<std::int64_t>(::getpid());
  add(std::move(own), trainer_pid, 0, "trainer (pid " + std::to_string(trainer_pid) + ")",
      "supervisor");
  for (std::size_t k = 0; k < stage_events.size(); ++k) {
    auto track_events = runtime::trace_events_from_json_text(stage_events[k]);
    if (track_events.empty())
      continue; // no events, no track (and no pid to name it by)
    const auto pid = track_events.front().pid;
    const auto& slot = topology.stages[k];
    const auto& d = topology.devices.at(slot.device);
    auto who = topology.replicas > 1 ? "replica " + std::to_string(slot.replica) + " stage " +
                                           std::to_string(slot.stage)
                                     : "stage " + std::to_string(slot.stage);
    if (topology.tp > 1)
      who += " tp " + std::to_string(slot.tp_rank);
    add(std::move(track_events), pid, static_cast<std::int64_t>(k) + 1,
        who + " (node " + d.node + "/" + d.name + ", pid " + std::to_string(pid) + ")",
        "node " + d.node);
  }
  for (std::size_t i = 0; i < ps_events.size(); ++i) {
    auto track_events = runtime::trace_events_from_json_text(ps_events[i]);
    if (track_events.empty())
      continue;
    const auto pid = track_events.front().pid;
    const auto& slot = topology.ps_shards[i];
    const auto& d = topology.devices.at(slot.device);
    add(std::move(track_events), pid, ps_trace_tid(slot.shard),
        "ps shard " + std::to_string(slot.shard) + " (node " + d.node + "/" + d.name + ", pid " +
            std::to_string(pid) + ")",
        "node " + d.node);
  }
  for (auto& t : tracks) {
    std::string who;
    for (const auto& r : roles[t.pid])
      who += (who.empty() ? "" : ", ") + r;
    t.process_name = "troupe " + who + " (pid " + std::to_string(t.pid) + ")";
  }
  if (!run.is_object())
    run = nlohmann::json::object();
  run["tracks"] = std::move(summary);
  run["capacity_per_track"] = trainer.capacity();
  run["dropped_events"] = dropped_total;
  return runtime::chrome_trace(std::move(events), tracks, std::move(run));
}

} // namespace troupe::actors
