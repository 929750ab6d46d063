#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace troupe::models {

/// Half-open layer range [begin, end) held by one stage.
struct layer_range {
  std::size_t begin = 0;
  std::size_t end = 0;
  friend bool operator==(const layer_range&, const layer_range&) = default;
};

/// "[b, e)", as plans, logs and benches print a range.
std::string to_string(const layer_range& r);

/// The ranges' texts joined by `separator`: "[0, 2) [2, 5)".
std::string to_string(const std::vector<layer_range>& ranges, std::string_view separator = " ");

/// Splits `costs` (one per layer) into `stages` contiguous, non-empty ranges
/// minimising the largest stage cost divided by its device's speed
/// (`speeds`, one per stage; empty means all equal). Exact (dynamic
/// programming over split points). Throws std::invalid_argument when there
/// are fewer layers than stages.
std::vector<layer_range> partition_balanced(const std::vector<double>& costs, int stages,
                                            const std::vector<double>& speeds = {});

/// Splits `costs` (one per layer) into device_of.size() contiguous, non-empty
/// chunks, chunk c on device device_of[c] (devices 0..D-1, each holding one
/// chunk or more: virtual stages), minimising the busiest device's cost (its
/// chunks' costs summed, over its speed: `speeds`, one per device, empty for
/// equal), then the largest chunk's. A pipeline's steady state runs at the
/// busiest device's pace and its fill and drain at the largest chunk's;
/// balancing chunk by chunk instead can leave one device nearly all the
/// work (the zoo MLP interleaved on two devices: 2.7 MFLOP on one, 0.0 on
/// the other). From the chunk-by-chunk balanced split, improved by moving
/// single boundaries, a branch and bound finds the exact optimum (ties keep
/// the split found first): the zoo models take a few hundred nodes. Past
/// `max_nodes` nodes (long models in many chunks: 200 layers in 16 chunks
/// take about 4 M nodes, 40 ms) it returns the best split found so far,
/// never worse than that start.
/// Throws std::invalid_argument for fewer layers than chunks, a device out
/// of range, a device without a chunk or a speed count unlike the devices'.
std::vector<layer_range> partition_devices(const std::vector<double>& costs,
                                           const std::vector<int>& device_of,
                                           const std::vector<double>& speeds = {},
                                           std::size_t max_nodes = 4'000'000);

/// The busiest device's cost of `ranges` placed as device_of says, as
/// partition_devices() weighs it.
double busiest_device_cost(const std::vector<double>& costs, const std::vector<int>& device_of,
                           const std::vector<layer_range>& ranges,
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
