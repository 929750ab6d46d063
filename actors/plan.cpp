#include "actors/plan.hpp"

#include <algorithm>
#include <map>

#include <fmt/format.h>

#include "models/layer_costs.hpp"
#include "models/zoo.hpp"
#include "runtime/error.hpp"

namespace troupe::actors {

std::string plan::strategy() const {
  std::string pipeline;
  if (depth() == 1)
    pipeline = microbatches == 1 ? "single" : "gradient-accumulation";
  else
    pipeline = microbatches == 1 ? "layer-placement" : "pipeline";
  if (replicas == 1)
    return pipeline;
  return pipeline == "single" ? "data-parallel" : pipeline + "+data-parallel";
}

std::vector<device_slot> local_devices(const train_options& opts, unsigned cores) {
  const int devices = std::max(1, opts.stages) * std::max(1, opts.dp);
  const int threads = opts.threads > 0 ? opts.threads : static_cast<int>(std::max(1u, cores));
  std::vector<device_slot> r;
  for (int s = 0; s < devices; ++s) {
    device_slot d;
    d.name = "cpu:" + std::to_string(s);
    d.threads = std::max(1, threads / devices);
    r.push_back(d);
  }
  return r;
}

namespace {

/// `available` reordered round-robin across nodes, keeping each node's own
/// device order: nodes a(0, 1), b(0) give a/0, b/0, a/1.
std::vector<device_slot> interleave_nodes(const std::vector<device_slot>& available) {
  std::vector<std::string> order;
  std::map<std::string, std::vector<device_slot>> by_node;
  for (const auto& d : available) {
    if (!by_node.count(d.node))
      order.push_back(d.node);
    by_node[d.node].push_back(d);
  }
  std::vector<device_slot> r;
  for (std::size_t i = 0; r.size() < available.size(); ++i)
    for (const auto& node : order)
      if (i < by_node[node].size())
        r.push_back(by_node[node][i]);
  return r;
}

} // namespace

plan make_plan(const train_options& opts, const std::vector<device_slot>& available) {
  plan p;
  try {
    p.model = models::zoo_model(opts.model);
  } catch (const std::invalid_argument& e) {
    throw runtime::input_error(std::string{"--model: "} + e.what());
  }
  const int stages = opts.stages;
  const int virtual_stages = opts.virtual_stages;
  if (static_cast<std::size_t>(stages) > p.model.layers.size())
    throw runtime::input_error("--stages " + std::to_string(stages) + ": model " + opts.model +
                               " has only " + std::to_string(p.model.layers.size()) + " layers");
  if (static_cast<std::size_t>(stages * virtual_stages) > p.model.layers.size())
    throw runtime::input_error(fmt::format(
        "--stages {} --virtual-stages {} splits the model into {} chunks, but model {} "
        "has only {} layers",
        stages, virtual_stages, stages * virtual_stages, opts.model, p.model.layers.size()));
  const int replicas = opts.dp;
  const auto needed = static_cast<std::size_t>(stages) * static_cast<std::size_t>(replicas);
  if (needed > available.size())
    throw runtime::input_error(
        replicas == 1 ? fmt::format("--stages {} needs {} devices, the cluster has {}", stages,
                                    stages, available.size())
                      : fmt::format("--stages {} --dp {} needs {} devices, the cluster has {}",
                                    stages, replicas, needed, available.size()));
  auto order = interleave_nodes(available);
  p.devices.assign(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(needed));
  const int chunks = stages * virtual_stages;
  std::vector<models::layer_range> ranges;
  if (!opts.split.empty()) {
    std::size_t begin = 0;
    for (int n : opts.split) {
      ranges.push_back({begin, begin + static_cast<std::size_t>(n)});
      begin += static_cast<std::size_t>(n);
    }
    try {
      models::validate_partition(ranges, p.model.layers.size());
    } catch (const std::invalid_argument& e) {
      throw runtime::input_error(fmt::format("--split: {} (model {} has {} layers)", e.what(),
                                             opts.model, p.model.layers.size()));
    }
    p.partition = "explicit";
    p.layer_costs = models::layer_flops(p.model);
  } else {
    if (opts.partition == "measured") {
      const auto microbatch =
          std::max<std::int64_t>(1, opts.batch / (std::int64_t{replicas} * opts.microbatches));
      p.layer_costs = models::measure_layer_costs(p.model, microbatch, opts.seed);
    } else {
      p.layer_costs = models::layer_flops(p.model);
    }
    p.partition = opts.partition;
    // Faster devices take more (only when every stage device was measured;
    // with virtual stages a device holds several chunks, so speeds stay equal).
    std::vector<double> speeds;
    if (opts.partition == "measured" && virtual_stages == 1) {
      for (int s = 0; s < stages; ++s)
        speeds.push_back(p.devices[static_cast<std::size_t>(s)].gflops);
      if (std::any_of(speeds.begin(), speeds.end(), [](double g) { return !(g > 0); }))
        speeds.clear();
    }
    ranges = models::partition_balanced(p.layer_costs, chunks, speeds);
  }
  for (int r = 0; r < replicas; ++r)
    for (int s = 0; s < stages; ++s) {
      stage_slot slot{s, {}, static_cast<std::size_t>(r * stages + s), r};
      for (int v = 0; v < virtual_stages; ++v)
        slot.chunks.push_back(ranges[static_cast<std::size_t>(v * stages + s)]);
      p.stages.push_back(std::move(slot));
    }
  p.replicas = replicas;
  p.batch_shares = opts.batch_shares.empty()
                       ? std::vector<double>(static_cast<std::size_t>(replicas), 1.0)
                       : opts.batch_shares;
  double total = 0;
  for (double w : p.batch_shares)
    total += w;
  for (double& w : p.batch_shares)
    w /= total;
  p.microbatches = opts.microbatches;
  p.schedule = opts.schedule;
  p.virtual_stages = virtual_stages;
  return p;
}

plan make_plan(const train_options& opts, unsigned cores) {
  return make_plan(opts, local_devices(opts, cores));
}

nlohmann::json to_json(const plan& p) {
  nlohmann::json devices = nlohmann::json::array();
  for (const auto& d : p.devices)
    devices.push_back({{"name", d.name},
                       {"node", d.node},
                       {"device", runtime::to_string(d.where)},
                       {"threads", d.threads}});
  nlohmann::json stages = nlohmann::json::array();
  for (const auto& s : p.stages) {
    nlohmann::json chunks = nlohmann::json::array();
    for (const auto& c : s.chunks)
      chunks.push_back({c.begin, c.end});
    nlohmann::json j{{"stage", s.stage},
                     {"replica", s.replica},
                     {"chunks", chunks},
                     {"device", p.devices.at(s.device).name},
                     {"node", p.devices.at(s.device).node}};
    if (s.chunks.size() == 1)
      j["layers"] = chunks[0];
    stages.push_back(std::move(j));
  }
  return {{"strategy", p.strategy()},
          {"model", p.model.to_json()},
          {"devices", devices},
          {"stages", stages},
          {"microbatches", p.microbatches},
          {"schedule", std::string{to_string(p.schedule)}},
          {"virtual_stages", p.virtual_stages},
          {"replicas", p.replicas},
          {"batch_shares", p.batch_shares},
          {"partition", p.partition},
          {"layer_costs", p.layer_costs}};
}

std::string describe(const plan& p) {
  // fmt rather than operator+ chains: g++ 12 reports a bogus -Wrestrict on those.
  std::string r;
  for (const auto& s : p.stages) {
    const auto& d = p.devices.at(s.device);
    if (p.replicas > 1)
      r += fmt::format("replica {} ", s.replica);
    r += fmt::format("stage {}: layers", s.stage);
    for (std::size_t v = 0; v < s.chunks.size(); ++v) {
      const auto& c = s.chunks[v];
      r += fmt::format("{} [{}, {})", v == 0 ? "" : " |", c.begin, c.end);
      for (auto i = c.begin; i < c.end; ++i)
        r += fmt::format(" {}", p.model.layers[i].at("type").get<std::string>());
    }
    double cost = 0;
    for (const auto& c : s.chunks)
      for (auto i = c.begin; i < c.end && i < p.layer_costs.size(); ++i)
        cost += p.layer_costs[i];
    const auto cost_text = p.partition == "measured" ? fmt::format("{:.3f} ms", cost * 1e3)
                                                     : fmt::format("{:.1f} MFLOP", cost / 1e6);
    r += fmt::format(" ({}) on {}/{} ({} thread{})\n", cost_text, d.node, d.name, d.threads,
                     d.threads == 1 ? "" : "s");
  }
  if (p.replicas > 1) {
    r += fmt::format("batch shares:");
    for (std::size_t i = 0; i < p.batch_shares.size(); ++i)
      r += fmt::format(" {:.4g}", p.batch_shares[i]);
    r += "\n";
  }
  return r;
}

} // namespace troupe::actors
