#include "actors/cluster/balancing.hpp"

#include <chrono>

#include <fmt/format.h>

#include "actors/cluster/client_events.hpp"
#include "actors/cluster/recovery.hpp"
#include "actors/plan/balance.hpp"
#include "actors/plan/rebalancer.hpp"

namespace troupe::actors {

namespace {

/// A split as the trainer's rebalance entry writes it: [[begin, end], ...].
std::vector<models::layer_range> ranges_of(const nlohmann::json& split) {
  std::vector<models::layer_range> ranges;
  for (const auto& r : split)
    ranges.push_back({r.at(0).get<std::size_t>(), r.at(1).get<std::size_t>()});
  return ranges;
}

/// The current plan with stage k of its one pipeline holding `split[k]`.
plan with_split(plan p, const nlohmann::json& split) {
  const auto wanted = ranges_of(split);
  for (auto& s : p.stages)
    s.chunks = {wanted.at(static_cast<std::size_t>(s.stage))};
  std::vector<models::layer_range> ranges;
  for (int k = 0; k < p.depth(); ++k)
    ranges.push_back(p.slot(0, k).chunks.at(0));
  models::validate_partition(ranges, p.model.layers.size());
  return p;
}

} // namespace

void on_rebalance(supervisor_actor* self, const std::string& text) {
  auto& st = self->state;
  auto& job = st.job;
  if (job.phase != job_phase::running)
    return;
  nlohmann::json entry;
  try {
    entry = nlohmann::json::parse(text);
    entry["generation"] = job.generation;
    const auto kind = entry.at("kind").get<std::string>();
    st.log->info("job {}: rebalanced at step {} ({}): {}", job.id, entry.at("step").dump(), kind,
                 entry.at("why").get<std::string>());
    job.rebalances.push_back(entry);
    tell_client(self, job_event_kind::rebalance,
                {{"step", entry.at("step")}, {"kind", kind}, {"why", entry.at("why")}});
    if (kind == "shares") {
      job.topology.batch_shares = entry.at("new").get<std::vector<double>>();
      return;
    }
    auto next = with_split(job.topology, entry.at("new"));
    job.split_moves.emplace_back(
        clock_type::now(), split_move{ranges_of(entry.at("old")), ranges_of(entry.at("new"))});
    replan_with(self, std::move(next), "rebalance: layers move between stages");
  } catch (const std::exception& e) {
    st.log->warn("job {}: ignoring a malformed rebalance from the trainer ({}): {}", job.id,
                 e.what(), text);
  }
}

std::vector<split_move> recent_split_moves(const job_state& job) {
  const auto settle = std::chrono::duration<double>(rebalance_settings{}.settle_seconds);
  std::vector<split_move> recent;
  for (const auto& [when, move] : job.split_moves)
    if (clock_type::now() - when < settle)
      recent.push_back(move);
  return recent;
}

nlohmann::json balance_json(const job_state& job) {
  const auto& p = job.topology;
  auto devices = nlohmann::json::array();
  for (const auto& [node, by_name] : job.speeds)
    for (const auto& [name, speed] : by_name) {
      double seconds = 0;
      for (double s : speed.layer_seconds)
        seconds += s;
      devices.push_back({{"node", node},
                         {"device", name},
                         {"samples_per_second",
                          seconds > 0 ? static_cast<double>(speed.microbatch) / seconds : 0.0},
                         {"link_bytes_per_second", speed.link_bytes_per_second}});
    }
  auto split = nlohmann::json::array();
  for (int k = 0; k < p.depth(); ++k) {
    const auto& c = p.slot(0, k).chunks.at(0);
    split.push_back({c.begin, c.end});
  }
  return {{"mode", std::string{to_string(job.opts.balance)}},
          {"measured", p.balance == balance_mode::automatic},
          {"probe_seconds", job.probe_seconds},
          {"devices", devices},
          {"shares", p.batch_shares},
          {"split", split},
          {"predicted_step_seconds", p.predicted_step_seconds},
          {"rebalances", job.rebalances}};
}

} // namespace troupe::actors
