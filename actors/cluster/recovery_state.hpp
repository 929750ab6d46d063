#pragma once

// What the supervisor keeps to heal a job (recovery.hpp): its restore points,
// every failure and restart, the parallel degrees per step range and the
// step times a stall is measured against. Plain data; change it when a
// restart records something new.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <caf/actor_addr.hpp>
#include <nlohmann/json.hpp>

#include "actors/training/trainer.hpp"

namespace troupe::actors {

/// Where a recovered generation's state came from, cheapest first.
enum class restore_source : std::uint8_t {
  replicas,          ///< the live data-parallel replicas' shards (no step lost)
  parameter_servers, ///< the live parameter servers (no step lost)
  snapshot,          ///< the last snapshot in the supervisor's process
  checkpoint,        ///< the last complete checkpoint on disk
  initial,           ///< nothing saved yet: the seeded initial parameters
};

constexpr const char* to_string(restore_source s) {
  switch (s) {
  case restore_source::replicas:
    return "replicas";
  case restore_source::parameter_servers:
    return "parameter_servers";
  case restore_source::snapshot:
    return "snapshot";
  case restore_source::checkpoint:
    return "checkpoint";
  case restore_source::initial:
    return "initial";
  }
  return "?";
}

/// Why a generation ended: an actor or a node lost, a stall, or a re-plan
/// asked for (growing back after nodes joined).
struct failure {
  std::string what;      ///< names the actor or node and the reason
  std::string node;      ///< the node lost, if a node was
  caf::actor_addr actor; ///< the actor lost, if one was
  /// Seconds between the last sign of life of what failed and its detection
  /// (a node's last heartbeat reply); negative when not known.
  double silent_seconds = -1;
};

/// One restart of a job: what failed, how it was restored and what it cost.
struct restart_record {
  std::uint32_t generation = 0; ///< the generation it started
  std::vector<std::string> failures;
  double detected_at = 0; ///< unix time
  double detection_seconds = -1;
  restore_source source = restore_source::initial;
  std::int64_t failed_at_step = 0;    ///< steps done when it failed
  std::int64_t restored_step = 0;     ///< steps the restored state holds
  double replan_seconds = -1;         ///< detection to the new trainer running
  std::optional<double> seconds_lost; ///< detection to the failed step redone
  int dp = 1, stages = 1, tp = 1;     ///< the new generation's degrees
  bool planned = false;               ///< a re-plan asked for (growing back), not a failure
};

/// The degrees a job ran with from a step on.
struct degree_range {
  std::int64_t from_step = 0;
  std::uint32_t generation = 1;
  int dp = 1, stages = 1, tp = 1;
};

struct recovery_state {
  std::chrono::steady_clock::time_point detected; ///< of the recovery under way
  std::optional<job_snapshot> snapshot;           ///< the latest one
  std::int64_t checkpoint_step = -1;              ///< the latest complete one on disk
  std::vector<restart_record> restarts;
  std::vector<std::string> all_failures;
  std::vector<degree_range> degrees;
  std::vector<caf::actor_addr> lost_actors; ///< of the generation being torn down
  /// Set once the failed generation is torn down and its restore point
  /// chosen: what the next generation resumes from (null: the initial state).
  bool restored = false;
  std::shared_ptr<const runtime::checkpoint> resume;
  int failed_restarts = 0; ///< restarts counted against max_restarts
  bool growing = false;    ///< a grow-back re-plan is under way
  /// A rebalance's plan (the same devices, layers moved between stages): the
  /// next generation runs it instead of a fresh plan.
  std::optional<plan> next_topology;
  std::chrono::steady_clock::time_point waiting_since; ///< for nodes, no plan fitting
  // Stall detection: the generation's last progress and its step times.
  std::chrono::steady_clock::time_point last_progress;
  std::vector<double> step_seconds; ///< recent, for the median
  std::int64_t last_step = 0;
  bool diagnosing = false;
  nlohmann::json last_stall = nullptr; ///< the last stall report, for /status
};

} // namespace troupe::actors
