#pragma once

#include <cstddef>
#include <utility>
#include <vector>

namespace troupe::models {

/// Half-open layer range [begin, end) held by one stage.
struct layer_range {
  std::size_t begin = 0;
  std::size_t end = 0;
  friend bool operator==(const layer_range&, const layer_range&) = default;
};

/// Splits `costs` (one per layer) into `stages` contiguous, non-empty ranges
/// minimising the largest stage cost divided by its device's speed
/// (`speeds`, one per stage; empty means all equal). Exact (dynamic
/// programming over split points). Throws std::invalid_argument when there
/// are fewer layers than stages.
std::vector<layer_range> partition_balanced(const std::vector<double>& costs, int stages,
                                            const std::vector<double>& speeds = {});

/// What placing layers on unlike devices costs: layer[k][l] is layer l's
/// cost on stage k's device; boundary[k][i] (i in [0, layers]) what stage k
/// pays for a cut at i, the activation crossing there in and its gradient
/// out, or out and in (empty: cuts are free).
struct stage_costs {
  std::vector<std::vector<double>> layer;
  std::vector<std::vector<double>> boundary;
  /// Stage k's cost holding `r`: its layers plus its cuts (not 0 or the end).
  double of(std::size_t k, const layer_range& r) const;
};

/// Splits into layer.size() contiguous, non-empty ranges minimising the
/// largest stage's cost (exact, dynamic programming; ties keep the earliest
/// cut). Throws std::invalid_argument for fewer layers than stages or rows
/// of unequal length.
std::vector<layer_range> partition_min_max(const stage_costs& costs);
/// Without boundary costs.
std::vector<layer_range> partition_min_max(const std::vector<std::vector<double>>& costs);

/// The largest stage's cost of `ranges`.
double bottleneck_cost(const stage_costs& costs, const std::vector<layer_range>& ranges);
double bottleneck_cost(const std::vector<std::vector<double>>& costs,
                       const std::vector<layer_range>& ranges);

/// Checks a user-given split (ranges contiguous, non-empty, covering all
/// `layers`); throws std::invalid_argument describing the first problem.
void validate_partition(const std::vector<layer_range>& ranges, std::size_t layers);

} // namespace troupe::models
