#include "models/partitioner.hpp"

#include <algorithm>
#include <limits>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>

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

namespace {

/// partition_devices' search state: chunk ends chosen so far, each device's
/// load, and the best complete split (busiest device, then largest chunk).
class device_split_search {
public:
  device_split_search(const std::vector<double>& costs, const std::vector<int>& device_of,
                      std::vector<double> inverse_speed, std::size_t max_nodes)
      : device_of_(device_of), inverse_speed_(std::move(inverse_speed)), max_nodes_(max_nodes),
        load_(inverse_speed_.size(), 0.0), ends_(device_of.size(), 0) {
    prefix_.push_back(0);
    for (double c : costs)
      prefix_.push_back(prefix_.back() + std::max(c, 0.0));
  }

  /// Scores `ranges` as the start; improve() and search() only take
  /// strictly better splits.
  void start_from(const std::vector<layer_range>& ranges) {
    best_ends_.clear();
    for (const auto& r : ranges)
      best_ends_.push_back(r.end);
    std::tie(best_device_, best_chunk_) = score(best_ends_);
  }

  /// Moves single chunk boundaries by one layer while that lowers the best
  /// (busiest device, largest chunk): a close start prunes the search, and
  /// is what remains where the search runs out of budget (long models cut
  /// into many chunks).
  void improve() {
    auto ends = best_ends_;
    for (bool moved = true; moved;) {
      moved = false;
      for (std::size_t k = 0; k + 1 < ends.size(); ++k)
        for (int step : {-1, 1}) {
          const std::size_t begin = k == 0 ? 0 : ends[k - 1];
          const auto end = static_cast<std::size_t>(static_cast<long>(ends[k]) + step);
          if (end <= begin || end >= ends[k + 1])
            continue;
          auto tried = ends;
          tried[k] = end;
          const auto [busiest, largest] = score(tried);
          if (busiest < best_device_ || (busiest == best_device_ && largest < best_chunk_)) {
            best_device_ = busiest;
            best_chunk_ = largest;
            best_ends_ = ends = tried;
            moved = true;
          }
        }
    }
  }

  void search() { visit(0, 0, 0.0, 0.0); }

  std::vector<layer_range> best() const {
    std::vector<layer_range> r;
    std::size_t begin = 0;
    for (auto end : best_ends_) {
      r.push_back({begin, end});
      begin = end;
    }
    return r;
  }

private:
  /// (busiest device, largest chunk) of the chunks ending at `ends`.
  std::pair<double, double> score(const std::vector<std::size_t>& ends) {
    std::fill(load_.begin(), load_.end(), 0.0);
    double largest = 0;
    std::size_t begin = 0;
    for (std::size_t c = 0; c < ends.size(); ++c) {
      const double cost = cost_of(c, begin, ends[c]);
      load_[static_cast<std::size_t>(device_of_[c])] += cost;
      largest = std::max(largest, cost);
      begin = ends[c];
    }
    const double busiest = *std::max_element(load_.begin(), load_.end());
    std::fill(load_.begin(), load_.end(), 0.0);
    return {busiest, largest};
  }

  double cost_of(std::size_t chunk, std::size_t begin, std::size_t end) const {
    return (prefix_[end] - prefix_[begin]) *
           inverse_speed_[static_cast<std::size_t>(device_of_[chunk])];
  }

  /// Chunk c begins at layer `begin`; the chunks before it reached busiest
  /// device `busiest` and largest chunk `largest`.
  void visit(std::size_t c, std::size_t begin, double busiest, double largest) {
    const std::size_t chunks = device_of_.size();
    const std::size_t n = prefix_.size() - 1;
    auto& load = load_[static_cast<std::size_t>(device_of_[c])];
    const std::size_t last_end = n - (chunks - 1 - c); // leaves a layer for each later chunk
    for (std::size_t end = c + 1 == chunks ? n : begin + 1; end <= last_end; ++end) {
      if (++nodes_ > max_nodes_)
        return;
      const double cost = cost_of(c, begin, end);
      const double b = std::max(busiest, load + cost);
      const double l = std::max(largest, cost);
      // Costs only grow with `end`: once no completion can beat the best,
      // no longer chunk can either.
      if (b > best_device_ || (b == best_device_ && l >= best_chunk_))
        return;
      ends_[c] = end;
      if (c + 1 == chunks) {
        best_device_ = b;
        best_chunk_ = l;
        best_ends_ = ends_;
        return;
      }
      load += cost;
      visit(c + 1, end, b, l);
      load -= cost;
    }
  }

  const std::vector<int>& device_of_;
  const std::vector<double> inverse_speed_;
  const std::size_t max_nodes_;
  std::vector<double> prefix_;
  std::vector<double> load_;
  std::vector<std::size_t> ends_;
  std::vector<std::size_t> best_ends_;
  double best_device_ = 0;
  double best_chunk_ = 0;
  std::size_t nodes_ = 0;
};

/// One over each device's speed; checks device_of and speeds.
std::vector<double> inverse_speeds(const std::vector<int>& device_of,
                                   const std::vector<double>& speeds) {
  int devices = 0;
  for (int d : device_of) {
    if (d < 0)
      throw std::invalid_argument("partition: chunk on device " + std::to_string(d));
    devices = std::max(devices, d + 1);
  }
  std::vector<bool> used(static_cast<std::size_t>(devices), false);
  for (int d : device_of)
    used[static_cast<std::size_t>(d)] = true;
  for (int d = 0; d < devices; ++d)
    if (!used[static_cast<std::size_t>(d)])
      throw std::invalid_argument("partition: device " + std::to_string(d) + " holds no chunk");
  if (!speeds.empty() && speeds.size() != static_cast<std::size_t>(devices))
    throw std::invalid_argument("partition: " + std::to_string(speeds.size()) + " speeds for " +
                                std::to_string(devices) + " devices");
  std::vector<double> inverse;
  for (int d = 0; d < devices; ++d)
    inverse.push_back(speeds.empty() ? 1.0
                                     : 1.0 / std::max(speeds[static_cast<std::size_t>(d)], 1e-12));
  return inverse;
}

} // namespace

std::string to_string(const layer_range& r) {
  // Appends rather than an operator+ chain: g++ 12 reports a bogus -Wrestrict there.
  std::string text = "[";
  text += std::to_string(r.begin);
  text += ", ";
  text += std::to_string(r.end);
  text += ')';
  return text;
}

std::string to_string(const std::vector<layer_range>& ranges, std::string_view separator) {
  std::string text;
  for (const auto& r : ranges) {
    if (!text.empty())
      text += separator;
    text += to_string(r);
  }
  return text;
}

std::vector<layer_range> partition_devices(const std::vector<double>& costs,
                                           const std::vector<int>& device_of,
                                           const std::vector<double>& speeds,
                                           std::size_t max_nodes) {
  const auto chunks = static_cast<int>(device_of.size());
  if (chunks < 1 || costs.size() < device_of.size())
    throw std::invalid_argument("cannot split " + std::to_string(costs.size()) + " layers into " +
                                std::to_string(chunks) + " non-empty chunks");
  device_split_search s{costs, device_of, inverse_speeds(device_of, speeds), max_nodes};
  s.start_from(partition_balanced(costs, chunks));
  s.improve();
  s.search();
  return s.best();
}

double busiest_device_cost(const std::vector<double>& costs, const std::vector<int>& device_of,
                           const std::vector<layer_range>& ranges,
                           const std::vector<double>& speeds) {
  if (ranges.size() != device_of.size())
    throw std::invalid_argument("partition: " + std::to_string(ranges.size()) + " ranges for " +
                                std::to_string(device_of.size()) + " chunks");
  const auto inverse = inverse_speeds(device_of, speeds);
  std::vector<double> load(inverse.size(), 0.0);
  for (std::size_t c = 0; c < ranges.size(); ++c)
    for (auto l = ranges[c].begin; l < ranges[c].end && l < costs.size(); ++l)
      load[static_cast<std::size_t>(device_of[c])] +=
          std::max(costs[l], 0.0) * inverse[static_cast<std::size_t>(device_of[c])];
  return *std::max_element(load.begin(), load.end());
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
