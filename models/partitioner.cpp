#include "models/partitioner.hpp"

#include <algorithm>
#include <limits>
#include <stdexcept>
#include <string>

namespace troupe::models {

std::vector<layer_range> partition_balanced(const std::vector<double>& costs, int stages,
                                            const std::vector<double>& speeds) {
  const auto n = costs.size();
  if (stages < 1 || n < static_cast<std::size_t>(stages))
    throw std::invalid_argument("cannot split " + std::to_string(n) + " layers into " +
                                std::to_string(stages) + " non-empty stages");
  if (!speeds.empty() && speeds.size() != static_cast<std::size_t>(stages))
    throw std::invalid_argument("partition: one speed per stage expected");
  auto speed = [&](int s) { return speeds.empty() ? 1.0 : std::max(speeds[s], 1e-12); };
  std::vector<double> prefix(n + 1, 0.0);
  for (std::size_t i = 0; i < n; ++i)
    prefix[i + 1] = prefix[i] + std::max(costs[i], 0.0);
  const double inf = std::numeric_limits<double>::infinity();
  // best[s][i]: minimal bottleneck placing layers [0, i) on stages [0, s).
  std::vector<std::vector<double>> best(stages + 1, std::vector<double>(n + 1, inf));
  std::vector<std::vector<std::size_t>> cut(stages + 1, std::vector<std::size_t>(n + 1, 0));
  best[0][0] = 0;
  for (int s = 1; s <= stages; ++s)
    for (std::size_t i = s; i <= n - (stages - s); ++i)
      for (std::size_t j = s - 1; j < i; ++j) {
        double v = std::max(best[s - 1][j], (prefix[i] - prefix[j]) / speed(s - 1));
        // '<' keeps the earliest cut on ties, so results are deterministic.
        if (v < best[s][i]) {
          best[s][i] = v;
          cut[s][i] = j;
        }
      }
  std::vector<layer_range> r(stages);
  std::size_t end = n;
  for (int s = stages; s >= 1; --s) {
    r[s - 1] = {cut[s][end], end};
    end = cut[s][end];
  }
  return r;
}

void validate_partition(const std::vector<layer_range>& ranges, std::size_t layers) {
  std::size_t expected = 0;
  for (std::size_t i = 0; i < ranges.size(); ++i) {
    if (ranges[i].begin != expected)
      throw std::invalid_argument("stage " + std::to_string(i) + " starts at layer " +
                                  std::to_string(ranges[i].begin) + ", expected " +
                                  std::to_string(expected));
    if (ranges[i].end <= ranges[i].begin)
      throw std::invalid_argument("stage " + std::to_string(i) + " is empty");
    expected = ranges[i].end;
  }
  if (expected != layers)
    throw std::invalid_argument("the stages cover " + std::to_string(expected) + " of " +
                                std::to_string(layers) + " layers");
}

} // namespace troupe::models
