#include "actors/plan/plan.hpp"

#include <algorithm>
#include <functional>
#include <map>

#include <fmt/format.h>

#include "actors/plan/balance.hpp"
#include "models/layer_costs.hpp"
#include "models/layers/layer_registry.hpp"
#include "models/tensor_parallel.hpp"
#include "models/zoo.hpp"
#include "runtime/error.hpp"

namespace troupe::actors {

std::string plan::strategy() const {
  std::string pipeline;
  if (depth() == 1)
    pipeline = microbatches == 1 ? "single" : "gradient-accumulation";
  else
    pipeline = microbatches == 1 ? "layer-placement" : "pipeline";
  std::string r = pipeline;
  if (replicas > 1)
    r = pipeline == "single" ? "data-parallel" : pipeline + "+data-parallel";
  if (tp > 1)
    r = r == "single" ? "tensor-parallel" : r + "+tensor-parallel";
  if (!ps_shards.empty())
    r += "+parameter-server";
  return r;
}

std::vector<device_slot> local_devices(const train_options& opts, unsigned cores) {
  const int devices =
      std::max(1, opts.stages) * std::max(1, opts.dp) * std::max(1, opts.tp) + opts.ps;
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

/// Devices grouped by node: the nodes in order of first appearance, and
/// each node's devices in their order.
struct node_groups {
  std::vector<std::string> order;
  std::map<std::string, std::vector<device_slot>> devices;
  explicit node_groups(const std::vector<device_slot>& all) {
    for (const auto& d : all) {
      if (!devices.count(d.node))
        order.push_back(d.node);
      devices[d.node].push_back(d);
    }
  }
};

/// `available` reordered round-robin across nodes, keeping each node's own
/// device order: nodes a(0, 1), b(0) give a/0, b/0, a/1.
std::vector<device_slot> interleave_nodes(const std::vector<device_slot>& available) {
  node_groups g{available};
  auto& order = g.order;
  auto& by_node = g.devices;
  std::vector<device_slot> r;
  for (std::size_t i = 0; r.size() < available.size(); ++i)
    for (const auto& node : order)
      if (i < by_node[node].size())
        r.push_back(by_node[node][i]);
  return r;
}

/// --balance auto with tensor parallelism: `devices` reordered so that every
/// run of `tp` consecutive devices (one stage's tensor-parallel group) comes
/// from one node where a node has that many left (in-process collectives,
/// the fastest link), nodes with the faster measured data plane first; the
/// devices left over follow round-robin.
std::vector<device_slot> group_by_node(const std::vector<device_slot>& devices, int tp) {
  node_groups g{devices};
  auto& nodes = g.order;
  auto& by_node = g.devices;
  std::stable_sort(nodes.begin(), nodes.end(), [&](const auto& a, const auto& b) {
    return by_node[a].front().link_bytes_per_second > by_node[b].front().link_bytes_per_second;
  });
  std::vector<device_slot> r, rest;
  const auto group = static_cast<std::size_t>(std::max(1, tp));
  // Whole groups, one node at a time round-robin (stages spread over nodes).
  for (bool any = true; any;) {
    any = false;
    for (const auto& n : nodes) {
      auto& left = by_node[n];
      if (left.size() >= group) {
        r.insert(r.end(), left.begin(), left.begin() + static_cast<std::ptrdiff_t>(group));
        left.erase(left.begin(), left.begin() + static_cast<std::ptrdiff_t>(group));
        any = true;
      }
    }
  }
  for (const auto& n : nodes)
    rest.insert(rest.end(), by_node[n].begin(), by_node[n].end());
  auto spread = interleave_nodes(rest);
  r.insert(r.end(), spread.begin(), spread.end());
  return r;
}

/// (name, element count) of every parameter of the chunks, in model order.
std::vector<std::pair<std::string, std::int64_t>>
stage_parameters(const models::model_spec& spec, const std::vector<models::layer_range>& chunks) {
  std::vector<std::pair<std::string, std::int64_t>> r;
  for (const auto& c : chunks)
    for (auto i = c.begin; i < c.end; ++i) {
      auto layer = models::make_layer(spec.layers[i], i);
      for (const auto& prm : layer->parameters())
        r.emplace_back(prm.name, prm.value.numel());
    }
  return r;
}

/// Splits per-layer (or per-unit) costs into the job's chunks.
using splitter = std::function<std::vector<models::layer_range>(const std::vector<double>&)>;

/// Tensor parallelism: the balanced split, but never between the layers of
/// a column / row pair (models::tp_dense_pairs), whose cut would turn the
/// split activation into two extra all-reduces per micro-batch. Pairs are
/// kept whole as long as there are enough cut points left; otherwise the
/// plain split (a cut pair still computes correctly).
std::vector<models::layer_range> partition_keeping_pairs(const models::model_spec& spec,
                                                         const std::vector<double>& costs,
                                                         int chunks, const splitter& split) {
  std::vector<bool> may_cut(costs.size() + 1, true); // may_cut[i]: a chunk may begin at layer i
  for (const auto& [first, second] : models::tp_dense_pairs(spec))
    for (auto i = first + 1; i <= second && i < may_cut.size(); ++i)
      may_cut[i] = false;
  std::vector<double> unit_costs;
  std::vector<std::size_t> unit_begin;
  for (std::size_t i = 0; i < costs.size(); ++i) {
    if (i == 0 || may_cut[i]) {
      unit_begin.push_back(i);
      unit_costs.push_back(0);
    }
    unit_costs.back() += costs[i];
  }
  if (static_cast<int>(unit_costs.size()) < chunks)
    return split(costs);
  unit_begin.push_back(costs.size());
  auto units = split(unit_costs);
  for (auto& r : units)
    r = {unit_begin[r.begin], unit_begin[r.end]};
  return units;
}

/// The model of opts (its spec from a file, else the zoo model), checked
/// against the degrees asked for. Throws runtime::input_error naming the flag.
models::model_spec checked_model(const train_options& opts) {
  models::model_spec model;
  try {
    model = opts.model_spec.is_null() ? models::zoo_model(opts.model)
                                      : models::model_spec::from_json(opts.model_spec);
  } catch (const std::invalid_argument& e) {
    throw runtime::input_error(
        (opts.model_spec.is_null() ? "--model: " : "--model " + opts.model + ": ") + e.what());
  }
  const auto layers = model.layers.size();
  if (static_cast<std::size_t>(opts.stages) > layers)
    throw runtime::input_error("--stages " + std::to_string(opts.stages) + ": model " + opts.model +
                               " has only " + std::to_string(layers) + " layers");
  if (static_cast<std::size_t>(opts.stages * opts.virtual_stages) > layers)
    throw runtime::input_error(fmt::format(
        "--stages {} --virtual-stages {} splits the model into {} chunks, but model {} "
        "has only {} layers",
        opts.stages, opts.virtual_stages, opts.stages * opts.virtual_stages, opts.model, layers));
  if (opts.tp > 1) {
    try {
      (void)models::tp_layout(model, opts.tp); // every split layer can be split tp ways
    } catch (const std::invalid_argument& e) {
      throw runtime::input_error(fmt::format("--tp {}: {}", opts.tp, e.what()));
    }
  }
  return model;
}

/// Puts the workers (`workers` devices, in slot order) and then the
/// parameter servers on `available` into p.devices and p.ps_shards.
/// Parameter servers prefer the nodes of the cluster spec's "ps" job (nodes
/// joined from a cluster spec are named "<job>-<index>": "ps-0") and CPU
/// devices; workers the others, round-robin across nodes.
void place_devices(plan& p, const train_options& opts, std::size_t workers,
                   const std::vector<device_slot>& available) {
  const auto ps = static_cast<std::size_t>(opts.ps);
  if (workers + ps > available.size()) {
    std::string asked = fmt::format("--stages {}", opts.stages);
    if (opts.dp > 1)
      asked += fmt::format(" --dp {}", opts.dp);
    if (opts.tp > 1)
      asked += fmt::format(" --tp {}", opts.tp);
    if (ps > 0)
      asked += fmt::format(" --ps {}", ps);
    throw runtime::input_error(fmt::format("{} needs {} devices, the cluster has {}", asked,
                                           workers + ps, available.size()));
  }
  auto is_ps_node = [](const device_slot& d) {
    return d.node.rfind("ps-", 0) == 0 || d.node.rfind("ps:", 0) == 0;
  };
  std::vector<device_slot> worker_pool, ps_pool;
  for (const auto& d : available)
    (ps > 0 && is_ps_node(d) ? ps_pool : worker_pool).push_back(d);
  const bool balance = opts.balance == balance_mode::automatic;
  auto order =
      balance && opts.tp > 1 ? group_by_node(worker_pool, opts.tp) : interleave_nodes(worker_pool);
  auto ps_order = interleave_nodes(ps_pool);
  while (order.size() < workers) { // too few worker devices: borrow ps-job ones
    order.push_back(ps_order.front());
    ps_order.erase(ps_order.begin());
  }
  // Devices left over by the workers serve the remaining parameter servers.
  ps_order.insert(ps_order.end(), order.begin() + static_cast<std::ptrdiff_t>(workers),
                  order.end());
  const auto cpus = std::stable_partition(ps_order.begin(), ps_order.end(),
                                          [](const device_slot& d) { return !d.where.is_cuda(); });
  // --balance auto: parameter servers on the CPU devices with the fastest
  // measured data plane first (every push and pull crosses it).
  if (balance)
    std::stable_sort(ps_order.begin(), cpus, [](const device_slot& a, const device_slot& b) {
      return a.link_bytes_per_second > b.link_bytes_per_second;
    });
  p.devices.assign(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(workers));
  for (std::size_t i = 0; i < ps; ++i) {
    if (ps_order[i].where.is_cuda())
      throw runtime::input_error(
          fmt::format("--ps {}: parameter servers need CPU devices, the cluster has too few", ps));
    p.ps_shards.push_back({static_cast<int>(i), p.devices.size()});
    p.devices.push_back(ps_order[i]);
  }
}

/// The layer ranges of the stages x virtual stages chunks (global virtual
/// stage order): --split as given, or balanced by FLOPs or measured cost,
/// faster devices taking more when every stage device was measured. Sets
/// p.partition and p.layer_costs.
std::vector<models::layer_range> chunk_ranges(plan& p, const train_options& opts) {
  const int chunks = opts.stages * opts.virtual_stages;
  if (!opts.split.empty()) {
    std::vector<models::layer_range> ranges;
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
    return ranges;
  }
  if (opts.partition == "measured") {
    const auto microbatch =
        std::max<std::int64_t>(1, opts.batch / (std::int64_t{opts.dp} * opts.microbatches));
    p.layer_costs = models::measure_layer_costs(p.model, microbatch, opts.seed);
  } else {
    p.layer_costs = models::layer_flops(p.model);
  }
  p.partition = opts.partition;
  std::vector<double> speeds;
  if (opts.partition == "measured") {
    for (int s = 0; s < opts.stages; ++s)
      speeds.push_back(p.devices[p.grid().index({0, s, 0})].gflops);
    if (std::any_of(speeds.begin(), speeds.end(), [](double g) { return !(g > 0); }))
      speeds.clear();
  }
  // With virtual stages a device holds several chunks: its chunks together
  // are balanced against the other devices', not each chunk on its own.
  std::vector<int> device_of;
  for (int c = 0; c < chunks; ++c)
    device_of.push_back(position_of(layout_of(opts.schedule), opts.stages, c).stage);
  const splitter split = [&](const std::vector<double>& costs) {
    return chunks > opts.stages ? models::partition_devices(costs, device_of, speeds)
                                : models::partition_balanced(costs, chunks, speeds);
  };
  return opts.tp > 1 ? partition_keeping_pairs(p.model, p.layer_costs, chunks, split)
                     : split(p.layer_costs);
}

} // namespace

plan make_plan(const train_options& opts, const std::vector<device_slot>& available) {
  plan p;
  p.model = checked_model(opts);
  p.replicas = opts.dp;
  p.tp = opts.tp;
  const slot_grid grid{opts.dp, opts.stages, opts.tp};
  place_devices(p, opts, grid.size(), available);
  p.stages.resize(grid.size()); // depth() and grid() hold from here on
  const auto ranges = chunk_ranges(p, opts);
  for (std::size_t i = 0; i < grid.size(); ++i) {
    const auto id = grid.at(i);
    stage_slot slot{id.stage, {}, i, id.replica, id.tp_rank};
    for (int v = 0; v < opts.virtual_stages; ++v)
      slot.chunks.push_back(ranges[static_cast<std::size_t>(
          virtual_stage(layout_of(opts.schedule), opts.stages, id.stage, v))]);
    p.stages[i] = std::move(slot);
  }
  if (opts.ps > 0) {
    // Parameters of every stage, in model order, spread over the shards.
    std::vector<ps_param_info> params;
    for (int s = 0; s < opts.stages; ++s)
      for (const auto& info : stage_parameters(p.model, p.slot(0, s).chunks))
        params.push_back({info.first, s, info.second});
    p.ps_layout = assign_parameters(params, opts.ps, opts.ps_split_bytes);
    p.ps_mode = opts.ps_mode;
    p.staleness = opts.staleness;
  }
  p.batch_shares = opts.batch_shares.empty()
                       ? std::vector<double>(static_cast<std::size_t>(opts.dp), 1.0)
                       : opts.batch_shares;
  double total = 0;
  for (double w : p.batch_shares)
    total += w;
  for (double& w : p.batch_shares)
    w /= total;
  p.microbatches = opts.microbatches;
  p.schedule = opts.schedule;
  p.virtual_stages = opts.virtual_stages;
  balance_plan(p, opts);
  return p;
}

plan place_saved_plan(plan p, const std::vector<device_slot>& available) {
  for (auto& d : p.devices) {
    auto it = std::find_if(available.begin(), available.end(), [&](const device_slot& a) {
      return a.node == d.node && a.name == d.name;
    });
    if (it != available.end()) {
      d.where = it->where;
      d.gflops = it->gflops;
      if (d.node != "local")
        d.threads = it->threads;
    } else if (d.node != "local" ||
               std::any_of(available.begin(), available.end(),
                           [](const device_slot& a) { return a.node != "local"; })) {
      throw runtime::input_error(
          "--plan: device " + d.node + "/" + d.name +
          " is not in the cluster (nodes ready: " + std::to_string(available.size()) + " devices)");
    }
  }
  return p;
}

void adopt_plan_degrees(train_options& opts, const plan& p) {
  if (opts.model != p.model.name)
    throw runtime::input_error("--plan: the plan is for model " + p.model.name + ", not --model " +
                               opts.model);
  opts.stages = p.depth();
  opts.dp = p.replicas;
  opts.tp = p.tp;
  opts.ps = static_cast<int>(p.ps_shards.size());
  opts.microbatches = p.microbatches;
  opts.schedule = p.schedule;
  opts.virtual_stages = p.virtual_stages;
  if (!p.ps_shards.empty()) {
    opts.ps_mode = p.ps_mode;
    opts.staleness = p.staleness;
  }
  opts.split.clear();
  opts.batch_shares = p.batch_shares;
  opts.validate();
}

plan make_plan(const train_options& opts, unsigned cores) {
  return make_plan(opts, local_devices(opts, cores));
}

} // namespace troupe::actors
