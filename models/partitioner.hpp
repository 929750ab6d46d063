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

/// The same with a cost per stage and layer: `costs[k][l]` is layer l's cost
/// on stage k's device (unlike devices run unlike layers at unlike speeds).
/// Minimises the largest stage's summed cost; ties keep the earliest cut.
/// Throws std::invalid_argument for fewer layers than stages or rows of
/// unequal length.
std::vector<layer_range> partition_min_max(const std::vector<std::vector<double>>& costs);

/// The largest stage's summed cost of `ranges` under `costs` (as above).
double bottleneck_cost(const std::vector<std::vector<double>>& costs,
                       const std::vector<layer_range>& ranges);

/// Checks a user-given split (ranges contiguous, non-empty, covering all
/// `layers`); throws std::invalid_argument describing the first problem.
void validate_partition(const std::vector<layer_range>& ranges, std::size_t layers);

} // namespace troupe::models
