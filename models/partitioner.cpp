#include "models/partitioner.hpp"

#include <algorithm>
#include <limits>
#include <stdexcept>
#include <string>

namespace troupe::models {

std::vector<layer_range> partition_balanced(const std::vector<double>& costs, int stages,
                                            const std::vector<double>& speeds) {
  if (stages < 1 || costs.size() < static_cast<std::size_t>(stages))
    throw std::invalid_argument("cannot split " + std::to_string(costs.size()) + " layers into " +
                                std::to_string(stages) + " non-empty stages");
  if (!speeds.empty() && speeds.size() != static_cast<std::size_t>(stages))
    throw std::invalid_argument("partition: one speed per stage expected");
  std::vector<std::vector<double>> per_stage(static_cast<std::size_t>(stages));
  for (int s = 0; s < stages; ++s) {
    const double speed =
        speeds.empty() ? 1.0 : std::max(speeds[static_cast<std::size_t>(s)], 1e-12);
    for (double c : costs)
      per_stage[static_cast<std::size_t>(s)].push_back(std::max(c, 0.0) / speed);
  }
  return partition_min_max(per_stage);
}

double stage_costs::of(std::size_t k, const layer_range& r) const {
  double sum = 0;
  for (auto l = r.begin; l < r.end && l < layer[k].size(); ++l)
    sum += std::max(layer[k][l], 0.0);
  if (k < boundary.size()) {
    const auto n = layer[k].size();
    if (r.begin > 0)
      sum += boundary[k].at(r.begin);
    if (r.end < n)
      sum += boundary[k].at(r.end);
  }
  return sum;
}

std::vector<layer_range> partition_min_max(const stage_costs& costs) {
  const auto stages = costs.layer.size();
  const auto n = stages == 0 ? 0 : costs.layer.front().size();
  if (stages < 1 || n < stages)
    throw std::invalid_argument("cannot split " + std::to_string(n) + " layers into " +
                                std::to_string(stages) + " non-empty stages");
  for (std::size_t k = 0; k < stages; ++k)
    if (costs.layer[k].size() != n ||
        (!costs.boundary.empty() && costs.boundary.at(k).size() != n + 1))
      throw std::invalid_argument("partition: stage " + std::to_string(k) + " has " +
                                  std::to_string(costs.layer[k].size()) +
                                  " layer costs, expected " + std::to_string(n));
  const double inf = std::numeric_limits<double>::infinity();
  // best[s][i]: minimal bottleneck placing layers [0, i) on stages [0, s).
  std::vector<std::vector<double>> best(stages + 1, std::vector<double>(n + 1, inf));
  std::vector<std::vector<std::size_t>> cut(stages + 1, std::vector<std::size_t>(n + 1, 0));
  best[0][0] = 0;
  for (std::size_t s = 1; s <= stages; ++s)
    for (std::size_t i = s; i <= n - (stages - s); ++i)
      for (std::size_t j = s - 1; j < i; ++j) {
        double v = std::max(best[s - 1][j], costs.of(s - 1, {j, i}));
        // '<' keeps the earliest cut on ties, so results are deterministic.
        if (v < best[s][i]) {
          best[s][i] = v;
          cut[s][i] = j;
        }
      }
  std::vector<layer_range> r(stages);
  std::size_t end = n;
  for (auto s = stages; s >= 1; --s) {
    r[s - 1] = {cut[s][end], end};
    end = cut[s][end];
  }
  return r;
}

std::vector<layer_range> partition_min_max(const std::vector<std::vector<double>>& costs) {
  return partition_min_max(stage_costs{costs, {}});
}

double bottleneck_cost(const stage_costs& costs, const std::vector<layer_range>& ranges) {
  double worst = 0;
  for (std::size_t k = 0; k < ranges.size() && k < costs.layer.size(); ++k)
    worst = std::max(worst, costs.of(k, ranges[k]));
  return worst;
}

double bottleneck_cost(const std::vector<std::vector<double>>& costs,
                       const std::vector<layer_range>& ranges) {
  return bottleneck_cost(stage_costs{costs, {}}, ranges);
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
