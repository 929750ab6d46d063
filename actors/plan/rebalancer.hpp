#pragma once

// Live rebalancing (--balance auto): the trainer feeds every finished step's
// per-replica or per-stage compute times in; when one replica or stage stays
// slower than the plan assumed (a throttled node, a noisy neighbour), the
// rebalancer proposes new batch shares or a new stage split. Hysteresis keeps
// it from oscillating: a proposal must promise a `threshold` gain over a
// window of several CPU-quota periods, for `confirm` steps in a row, and stay
// the same proposal (within `stable`) over those steps, which a window still
// straddling a change does not. CAF-free; tests/plan/rebalancer_test.cpp
// drives it with synthetic step times.

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "actors/plan/balance.hpp"
#include "models/partitioner.hpp"

namespace troupe::actors {

struct rebalance_settings {
  int window_steps = 8;        ///< at least this many steps per estimate
  double window_seconds = 0.4; ///< and at least this much step time (quota periods)
  double threshold = 0.10;     ///< the predicted step must shrink by this much
  int confirm = 4;             ///< for this many steps in a row
  double stable = 0.05;        ///< with proposals this close (relative)
  double min_share = 0.02;     ///< no replica is starved completely
  /// A replica's rate measured while it was the bottleneck caps what it is
  /// trusted with for this much step time (see share_rebalancer).
  double ceiling_seconds = 60;
  /// Within this much step time of a rebalance the next one must promise
  /// twice the threshold (the one after that four times): a first move made
  /// with a rough cost model is not chased by refinements.
  double settle_seconds = 60;
};

/// A pipeline rebalance: the split before and after it.
struct split_move {
  std::vector<models::layer_range> from, to;
  /// Whether `proposal` gives a stage this move relieved more layers than
  /// the move left it (part of the way back, or all of it).
  bool undone_by(const std::vector<models::layer_range>& proposal) const;
};

/// What to change, and why (for the log and the report).
struct rebalance_decision {
  std::vector<double> shares;             ///< data parallelism: the new shares
  std::vector<models::layer_range> split; ///< a pipeline: the new stage ranges
  double predicted_gain = 0;              ///< current / proposed step time - 1
  std::string why;
};

/// Confirms a proposal over several steps (see the file comment).
class rebalance_trigger {
public:
  explicit rebalance_trigger(rebalance_settings s = {}) : s_(s) {}
  /// One step's proposal, from a window of `window_steps`, and its predicted
  /// gain; true when it is confirmed: the same proposal for `confirm` steps,
  /// and for half the window (a window still holding steps from before a
  /// change drifts while they leave it).
  bool update(double gain, const std::vector<double>& proposal, double step_seconds,
              std::size_t window_steps);
  /// A rebalance was made: a new streak, and the next needs more gain.
  void rebalanced();

private:
  rebalance_settings s_;
  std::deque<std::vector<double>> proposals_; ///< the streak's proposals, oldest first
  int recent_ = 0;                            ///< rebalances within settle_seconds of each other
  double since_ = 0;                          ///< step seconds since the last one
};

/// A replica's mean samples and compute seconds per step over a window.
struct replica_point {
  double samples = 0;
  double busy = 0;
};

/// Data parallelism: each replica's samples and compute seconds per step.
///
/// A CPU quota makes a device fast at a light load and slow at a heavy one:
/// under its quota it computes at full speed, over it its kernels wait out
/// the throttled part of every period. So a replica's rate is only trusted
/// as measured while it is the bottleneck (the replica with the most compute
/// time over the window, which is then working at its sustained speed); a
/// replica given less work can look fast only up to that ceiling. The
/// ceiling expires after ceiling_seconds of step time, so a device that
/// really got faster again wins its share back.
///
/// Each replica's cost is proportional to its samples until a rebalance has
/// shown it at two loads; then it is fitted as fixed + per-sample, and the
/// shares are those that make every replica finish at once. A rebalance must
/// promise `threshold` of the measured step time (not only of the compute).
class share_rebalancer {
public:
  /// `planned`: each replica's cost as the plan measured it (balance.hpp's
  /// replica_model), or empty. Its fixed part (the gradient exchange, which
  /// the compute times do not show) is added to what the replica is seen to
  /// compute, scaled by how much slower than planned it computes.
  share_rebalancer(std::vector<double> shares, rebalance_settings s = {},
                   std::vector<replica_cost> planned = {});
  /// One finished step: per replica its samples and its devices' compute
  /// seconds, and the step's wall time. A decision moves to its shares.
  std::optional<rebalance_decision> observe(const std::vector<std::int64_t>& samples,
                                            const std::vector<double>& compute,
                                            double step_seconds);
  const std::vector<double>& shares() const { return shares_; }

private:
  struct step {
    std::vector<std::int64_t> samples;
    std::vector<double> compute;
    double seconds = 0;
  };
  /// Keeps the step and ages the ceilings, the anchor and the last rebalance.
  void remember(const std::vector<std::int64_t>& samples, const std::vector<double>& compute,
                double step_seconds);
  rebalance_settings s_;
  std::vector<double> shares_;
  std::deque<step> history_;
  rebalance_trigger trigger_;
  std::vector<std::optional<replica_cost>> ceiling_; ///< per replica: as the bottleneck
  std::vector<double> ceiling_age_;                  ///< step seconds since measured
  std::vector<std::optional<replica_point>> anchor_; ///< per replica: at the last rebalance
  double anchor_age_ = 0;                            ///< step seconds since then
  std::vector<replica_cost> planned_;
  /// After a rebalance: the step time it gave (its first full window). The
  /// next one waits for the step to get slower than that by the threshold
  /// (the speeds changed) or for settle_seconds: a replica's compute time is
  /// a noisy, sometimes misleading witness under a quota, the step time is not.
  std::optional<double> baseline_;
  bool rebalanced_ = false;
  double since_rebalance_ = 0;
};

/// A single pipeline: per stage the compute seconds of each step. The cost
/// model is the plan's (seconds per step at the plan's speeds): layer l on
/// stage k's device costs layer[k][l], a cut there boundary[k][i]; a stage
/// running slower than its layers predict scales all of them on its device.
class split_rebalancer {
public:
  /// `recent`: the job's split moves shortly before (within
  /// settle_seconds); no proposal gives a stage one of them relieved more
  /// layers again (split_move::undone_by). The cost model starts from the
  /// plan's speeds each generation, and a device under a CPU quota looks
  /// fast at the light load a move left it: a job moved layers back onto
  /// it, and off again.
  split_rebalancer(models::stage_costs costs, std::vector<models::layer_range> split,
                   rebalance_settings s = {}, std::vector<split_move> recent = {});
  std::optional<rebalance_decision> observe(const std::vector<double>& stage_compute,
                                            double step_seconds);
  const std::vector<models::layer_range>& split() const { return split_; }

private:
  rebalance_settings s_;
  models::stage_costs costs_;
  std::vector<models::layer_range> split_;
  std::vector<split_move> recent_;
  std::deque<std::pair<std::vector<double>, double>> history_;
  rebalance_trigger trigger_;
};

} // namespace troupe::actors
