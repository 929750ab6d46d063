#include "actors/plan/balance.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include <fmt/format.h>

namespace troupe::actors {

namespace {

/// Forward + backward of one sample through every layer, in seconds; NaN
/// when the device is not measured.
double seconds_per_sample(const device_slot& d) {
  if (d.layer_seconds.empty() || d.profile_microbatch < 1)
    return std::nan("");
  double sum = 0;
  for (double s : d.layer_seconds)
    sum += s;
  return sum / static_cast<double>(d.profile_microbatch);
}

/// The devices that hold a stage (not the parameter servers').
std::vector<std::size_t> stage_devices(const plan& p) {
  std::vector<std::size_t> r;
  for (const auto& s : p.stages)
    if (std::find(r.begin(), r.end(), s.device) == r.end())
      r.push_back(s.device);
  return r;
}

/// Seconds per micro-batch of the profile's size for each stage of
/// `replica` (tensor-parallel ranks: the slowest).
std::vector<double> stage_seconds(const plan& p, int replica) {
  std::vector<double> r;
  for (int k = 0; k < p.depth(); ++k) {
    double worst = 0;
    for (int t = 0; t < p.tp; ++t) {
      double sum = 0;
      for (const auto& c : p.slot(replica, k, t).chunks)
        for (auto l = c.begin; l < c.end; ++l)
          sum += layer_cost(p, replica, k, t, l);
      worst = std::max(worst, sum);
    }
    r.push_back(worst);
  }
  return r;
}

} // namespace

std::vector<std::string> measurement_problems(const std::vector<device_slot>& devices,
                                              std::size_t layers) {
  std::vector<std::string> r;
  double fastest = std::numeric_limits<double>::infinity(), slowest = 0;
  std::string fastest_name, slowest_name;
  for (const auto& d : devices) {
    const auto who = fmt::format("node {} device {}", d.node, d.name);
    if (d.layer_seconds.empty()) {
      r.push_back(who + ": no measurement (the probe failed or timed out)");
      continue;
    }
    if (d.layer_seconds.size() != layers || d.profile_microbatch < 1) {
      r.push_back(fmt::format("{}: measured {} layers at micro-batch {}, the model has {}", who,
                              d.layer_seconds.size(), d.profile_microbatch, layers));
      continue;
    }
    const double t = seconds_per_sample(d);
    const bool bad_layer = std::any_of(d.layer_seconds.begin(), d.layer_seconds.end(),
                                       [](double s) { return !std::isfinite(s) || s < 0; });
    // 1 ns to 100 s per sample: anything outside is a broken clock or probe.
    if (bad_layer || !std::isfinite(t) || t < 1e-9 || t > 100) {
      r.push_back(fmt::format("{}: absurd speed ({} s per sample)", who, t));
      continue;
    }
    if (t < fastest) {
      fastest = t;
      fastest_name = who;
    }
    if (t > slowest) {
      slowest = t;
      slowest_name = who;
    }
  }
  if (r.empty() && slowest > 1000 * fastest)
    r.push_back(fmt::format("{} measured {:.3g} s per sample, {} {:.3g} s: a spread over 1000x is "
                            "not a speed difference",
                            slowest_name, slowest, fastest_name, fastest));
  return r;
}

bool measured(const plan& p) {
  std::vector<device_slot> used;
  for (auto i : stage_devices(p))
    used.push_back(p.devices.at(i));
  return !used.empty() && measurement_problems(used, p.model.layers.size()).empty();
}

double layer_cost(const plan& p, int replica, int stage, int tp_rank, std::size_t layer) {
  const auto& d = p.devices.at(p.slot(replica, stage, tp_rank).device);
  return d.layer_seconds.at(layer) / static_cast<double>(std::max(1, p.tp));
}

std::vector<models::layer_range> measured_split(const plan& p) {
  std::vector<std::vector<double>> costs(static_cast<std::size_t>(p.depth()),
                                         std::vector<double>(p.model.layers.size(), 0.0));
  for (int k = 0; k < p.depth(); ++k)
    for (std::size_t l = 0; l < p.model.layers.size(); ++l)
      for (int r = 0; r < p.replicas; ++r)
        for (int t = 0; t < p.tp; ++t)
          costs[static_cast<std::size_t>(k)][l] =
              std::max(costs[static_cast<std::size_t>(k)][l], layer_cost(p, r, k, t, l));
  return models::partition_min_max(costs);
}

namespace {

/// One replica's pipeline step over `samples` samples: micro-batches of
/// samples / M; one pass through every stage plus (M - 1) of the slowest.
double replica_step_seconds(const plan& p, int replica, double samples) {
  const auto per_mb = stage_seconds(p, replica);
  const auto& d = p.devices.at(p.slot(replica, 0).device);
  const int m = std::max(1, p.microbatches);
  const double scale =
      samples / m / static_cast<double>(std::max<std::int64_t>(1, d.profile_microbatch));
  const double sum = std::accumulate(per_mb.begin(), per_mb.end(), 0.0);
  const double worst = *std::max_element(per_mb.begin(), per_mb.end());
  return (sum + (m - 1) * worst) * scale;
}

} // namespace

double replica_samples_per_second(const plan& p, int replica, std::int64_t batch) {
  const double t = replica_step_seconds(p, replica, static_cast<double>(batch));
  return t > 0 ? static_cast<double>(batch) / t : 0.0;
}

std::vector<double> shares_from_rates(const std::vector<double>& samples_per_second) {
  const bool usable = !samples_per_second.empty() &&
                      std::all_of(samples_per_second.begin(), samples_per_second.end(),
                                  [](double r) { return std::isfinite(r) && r > 0; });
  std::vector<double> shares =
      usable ? samples_per_second : std::vector<double>(samples_per_second.size(), 1.0);
  const double total = std::accumulate(shares.begin(), shares.end(), 0.0);
  for (double& s : shares)
    s /= total;
  return shares;
}

double predicted_step_seconds(const plan& p, std::int64_t batch) {
  if (!measured(p))
    return 0;
  double worst = 0;
  for (int r = 0; r < p.replicas; ++r) {
    const double share =
        static_cast<std::size_t>(r) < p.batch_shares.size() ? p.batch_shares[r] : 1.0 / p.replicas;
    worst = std::max(worst, replica_step_seconds(p, r, share * static_cast<double>(batch)));
  }
  return worst;
}

void order_stage_devices(plan& p) {
  if (p.replicas != 1 || p.tp != 1 || p.virtual_stages != 1 || p.depth() < 2 || p.depth() > 7 ||
      !measured(p))
    return;
  std::vector<std::size_t> devices;
  for (int k = 0; k < p.depth(); ++k)
    devices.push_back(p.slot(0, k).device);
  auto order = devices;
  std::sort(order.begin(), order.end());
  auto bottleneck = [&](const std::vector<std::size_t>& o) {
    std::vector<std::vector<double>> costs;
    for (auto d : o)
      costs.push_back(p.devices.at(d).layer_seconds);
    return models::bottleneck_cost(costs, models::partition_min_max(costs));
  };
  auto best = devices;
  double best_cost = bottleneck(devices);
  do {
    // Strictly better only: equal orders keep the planner's placement.
    if (const double c = bottleneck(order); c < best_cost * (1 - 1e-9)) {
      best_cost = c;
      best = order;
    }
  } while (std::next_permutation(order.begin(), order.end()));
  for (int k = 0; k < p.depth(); ++k)
    p.stages[p.slot_index(0, k)].device = best[static_cast<std::size_t>(k)];
}

void balance_plan(plan& p, const train_options& opts) {
  if (opts.balance != balance_mode::automatic || !measured(p))
    return;
  p.balance = balance_mode::automatic;
  if (opts.split.empty() && p.virtual_stages == 1 && p.tp == 1 && p.depth() > 1) {
    order_stage_devices(p);
    const auto ranges = measured_split(p);
    for (auto& s : p.stages)
      s.chunks = {ranges.at(static_cast<std::size_t>(s.stage))};
    p.partition = "measured";
    p.layer_costs = p.devices.at(p.slot(0, 0).device).layer_seconds;
  }
  if (opts.batch_shares.empty() && p.replicas > 1) {
    std::vector<double> rates;
    for (int r = 0; r < p.replicas; ++r)
      rates.push_back(replica_samples_per_second(p, r, opts.batch));
    p.batch_shares = shares_from_rates(rates);
  }
  p.predicted_step_seconds = predicted_step_seconds(p, opts.batch);
}

} // namespace troupe::actors
