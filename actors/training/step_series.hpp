#pragma once

// The report's per-step series ("step_series"): loss, training accuracy,
// learning rate, samples/s and each pipeline stage's busy fraction over the
// run's steps, for `troupe report` and its plots. Bounded for long runs: at
// most max_points points, each the sum of `every` consecutive steps; when
// full, neighbours merge pairwise and `every` doubles, so the same steps
// always give the same points. Change it when a plot needs another series.

#include <cstdint>
#include <vector>

#include <nlohmann/json.hpp>

namespace troupe::actors::training {

/// What one training step adds to the series.
struct step_sample {
  std::int64_t step = 0;   ///< steps done at its end (counting it)
  double loss_sum = 0;     ///< summed over the step's predictions
  std::int64_t tokens = 0; ///< predictions (samples for a classifier)
  std::int64_t correct = 0;
  std::int64_t samples = 0;
  double lr = 0;
  double seconds = 0;
  /// Per pipeline stage: its compute seconds in the step (the mean of its
  /// replicas' and tensor-parallel ranks' shards); empty when unknown.
  std::vector<double> stage_compute;
};

class step_series {
public:
  explicit step_series(std::size_t max_points = default_max_points);

  void add(const step_sample& s);

  /// Points so far (tests); at most max_points.
  std::size_t size() const { return points_.size(); }

  /// Steps per point (a power of two).
  std::int64_t every() const { return every_; }

  /// Columns: {"every", "max_points", "step" (steps done at each point's end),
  /// "loss", "train_accuracy" (when `accuracy`), "lr", "samples_per_second",
  /// "stage_busy" (per stage, per point: compute / wall seconds)}.
  nlohmann::json to_json(bool accuracy) const;

  static constexpr std::size_t default_max_points = 1000;

private:
  struct point {
    std::int64_t step = 0;
    std::int64_t steps = 0;
    double loss_sum = 0;
    std::int64_t tokens = 0;
    std::int64_t correct = 0;
    std::int64_t samples = 0;
    double lr_sum = 0;
    double seconds = 0;
    std::vector<double> stage_compute;
  };

  static void merge(point& into, const point& from);
  void halve();

  std::size_t max_points_;
  std::int64_t every_ = 1;
  std::vector<point> points_;
};

} // namespace troupe::actors::training
