#pragma once

#include <cstddef>
#include <string>

namespace troupe::actors {

/// Where one layer shard sits in a job: tensor-parallel rank `tp_rank` of
/// pipeline stage `stage` of data-parallel replica `replica`. The identity
/// that logs, /metrics, traces, reports and error messages name a shard by.
struct slot_id {
  int replica = 0;
  int stage = 0;
  int tp_rank = 0;
  friend bool operator==(const slot_id&, const slot_id&) = default;
};

/// The grid of a job's layer shards: replicas x pipeline depth x
/// tensor-parallel ranks, laid out replica-major, then stage, then rank (the
/// order of plan::stages). The one place that turns a slot into an index or a
/// name.
struct slot_grid {
  int replicas = 1;
  int depth = 1; ///< stages per replica
  int tp = 1;

  std::size_t size() const { return static_cast<std::size_t>(replicas * depth * tp); }
  std::size_t index(slot_id s) const {
    return static_cast<std::size_t>((s.replica * depth + s.stage) * tp + s.tp_rank);
  }
  slot_id at(std::size_t i) const {
    const auto n = static_cast<int>(i);
    return {n / (depth * tp), (n / tp) % depth, n % tp};
  }
  /// "stage 1", "replica 0 stage 1", "replica 0 stage 1 tp rank 1": the parts
  /// that tell slots of this grid apart (no replica with one replica, no rank
  /// without tensor parallelism).
  std::string name(slot_id s) const {
    std::string n = replicas > 1 ? "replica " + std::to_string(s.replica) + " " : std::string{};
    n += "stage " + std::to_string(s.stage);
    if (tp > 1)
      n += " tp rank " + std::to_string(s.tp_rank);
    return n;
  }
};

} // namespace troupe::actors
