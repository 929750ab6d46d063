#include "actors/plan/balance.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include <fmt/format.h>

#include "models/layers/layer_registry.hpp"

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

double transfer_seconds(const device_slot& d, double bytes) {
  return d.link_bytes_per_second > 0 ? bytes / d.link_bytes_per_second : 0.0;
}

/// Bytes per sample crossing a cut before layer i (i in [0, layers]): the
/// activation entering it (forward) and, as large, its gradient (backward).
std::vector<double> cut_bytes(const models::model_spec& spec) {
  std::vector<double> r;
  for (const auto& shape : models::activation_shapes(spec))
    r.push_back(4.0 * static_cast<double>(runtime::shape_numel(shape)));
  return r;
}

/// f32 bytes of every parameter of each layer (the gradients all-reduced).
std::vector<double> layer_param_bytes(const models::model_spec& spec) {
  std::vector<double> r;
  for (std::size_t i = 0; i < spec.layers.size(); ++i) {
    double n = 0;
    const auto layer = models::make_layer(spec.layers[i], i); // outlives the loop below
    for (const auto& prm : layer->parameters())
      n += static_cast<double>(prm.value.numel());
    r.push_back(4 * n);
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

models::stage_costs replica_costs(const plan& p, int replica) {
  models::stage_costs c;
  const auto layers = p.model.layers.size();
  const auto cuts = cut_bytes(p.model);
  for (int k = 0; k < p.depth(); ++k) {
    std::vector<double> row(layers, 0.0), cut(layers + 1, 0.0);
    for (int t = 0; t < p.tp; ++t) {
      const auto& d = p.devices.at(p.slot(replica, k, t).device);
      for (std::size_t l = 0; l < layers; ++l)
        row[l] = std::max(row[l], layer_cost(p, replica, k, t, l));
      for (std::size_t i = 0; i <= layers; ++i) // the activation one way, its gradient back
        cut[i] = std::max(
            cut[i], transfer_seconds(d, 2 * cuts[i] * static_cast<double>(d.profile_microbatch)));
    }
    c.layer.push_back(std::move(row));
    c.boundary.push_back(std::move(cut));
  }
  return c;
}

std::vector<models::layer_range> measured_split(const plan& p) {
  auto costs = replica_costs(p, 0);
  for (int r = 1; r < p.replicas; ++r) {
    const auto other = replica_costs(p, r);
    for (std::size_t k = 0; k < costs.layer.size(); ++k) {
      for (std::size_t l = 0; l < costs.layer[k].size(); ++l)
        costs.layer[k][l] = std::max(costs.layer[k][l], other.layer[k][l]);
      for (std::size_t i = 0; i < costs.boundary[k].size(); ++i)
        costs.boundary[k][i] = std::max(costs.boundary[k][i], other.boundary[k][i]);
    }
  }
  return models::partition_min_max(costs);
}

replica_cost replica_model(const plan& p, int replica) {
  const auto costs = replica_costs(p, replica);
  const auto& first = p.devices.at(p.slot(replica, 0).device);
  const double mb0 = static_cast<double>(std::max<std::int64_t>(1, first.profile_microbatch));
  const int m = std::max(1, p.microbatches);
  double sum = 0, worst = 0;
  for (int k = 0; k < p.depth(); ++k) {
    double c = 0; // every chunk the stage's device holds (interleaved: several)
    for (const auto& chunk : p.slot(replica, k).chunks)
      c += costs.of(static_cast<std::size_t>(k), chunk);
    sum += c;
    worst = std::max(worst, c);
  }
  replica_cost r;
  // The pipeline: one pass through every stage plus (M - 1) of the slowest,
  // over micro-batches of n / M samples; and each sample's input crossing
  // from the supervisor's loader to the first stage.
  r.per_sample =
      (sum + (m - 1) * worst) / (m * mb0) + transfer_seconds(first, cut_bytes(p.model)[0]);
  // Every stage's gradients, all-reduced (a ring sends and receives
  // 2 (R - 1) / R of them) or pushed and pulled, at the same time.
  if (p.replicas > 1 || !p.ps_shards.empty()) {
    const auto params = layer_param_bytes(p.model);
    const double ring = p.ps_shards.empty() ? 2.0 * (p.replicas - 1) / p.replicas : 1.0;
    for (int k = 0; k < p.depth(); ++k) {
      double bytes = 0;
      for (const auto& c : p.slot(replica, k).chunks)
        for (auto l = c.begin; l < c.end; ++l)
          bytes += params[l] / std::max(1, p.tp);
      const auto& d = p.devices.at(p.slot(replica, k).device);
      r.fixed = std::max(r.fixed, transfer_seconds(d, 2 * ring * bytes));
    }
  }
  return r;
}

std::vector<double> equal_finish(const std::vector<replica_cost>& costs, double batch,
                                 double min_share) {
  auto samples_at = [&](double t) {
    std::vector<double> n;
    for (const auto& c : costs)
      n.push_back(std::max((t - c.fixed) / std::max(c.per_sample, 1e-15), min_share * batch));
    return n;
  };
  double lo = 0, hi = 0;
  for (const auto& c : costs)
    hi = std::max(hi, c.fixed + c.per_sample * batch);
  for (int i = 0; i < 100; ++i) {
    const double mid = (lo + hi) / 2;
    const auto n = samples_at(mid);
    (std::accumulate(n.begin(), n.end(), 0.0) < batch ? lo : hi) = mid;
  }
  auto n = samples_at(hi);
  const double total = std::accumulate(n.begin(), n.end(), 0.0);
  for (double& x : n)
    x /= total;
  return n;
}

double predicted_step_seconds(const plan& p, std::int64_t batch) {
  if (!measured(p))
    return 0;
  double worst = 0;
  for (int r = 0; r < p.replicas; ++r) {
    const double share =
        static_cast<std::size_t>(r) < p.batch_shares.size() ? p.batch_shares[r] : 1.0 / p.replicas;
    const auto c = replica_model(p, r);
    worst = std::max(worst, c.fixed + c.per_sample * share * static_cast<double>(batch));
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
    auto q = p;
    for (int k = 0; k < p.depth(); ++k)
      q.stages[q.slot_index(0, k)].device = o[static_cast<std::size_t>(k)];
    const auto costs = replica_costs(q, 0);
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
    std::vector<replica_cost> costs;
    for (int r = 0; r < p.replicas; ++r)
      costs.push_back(replica_model(p, r));
    p.batch_shares = equal_finish(costs, static_cast<double>(opts.batch), 0.02);
  }
  p.predicted_step_seconds = predicted_step_seconds(p, opts.batch);
}

} // namespace troupe::actors
