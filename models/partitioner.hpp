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

/// Checks a user-given split (ranges contiguous, non-empty, covering all
/// `layers`); throws std::invalid_argument describing the first problem.
void validate_partition(const std::vector<layer_range>& ranges, std::size_t layers);

} // namespace troupe::models
