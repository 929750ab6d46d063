// A plan as JSON (`troupe plan --json / --save`, `troupe train --plan`) and as
// text (the supervisor's log, `troupe plan`).

#include <cmath>
#include <map>
#include <set>
#include <stdexcept>
#include <utility>

#include <fmt/format.h>

#include "actors/plan/balance.hpp"
#include "actors/plan/plan.hpp"
#include "actors/plan/plan_memory.hpp"
#include "models/layers/layer_registry.hpp"
#include "models/tensor_parallel.hpp"
#include "runtime/error.hpp"

namespace troupe::actors {

using nlohmann::json;

namespace {

/// Keys a plan object may have; "strategy" and "memory" are derived and
/// ignored on reading.
const std::set<std::string> plan_keys{"strategy",
                                      "model",
                                      "devices",
                                      "depth",
                                      "replicas",
                                      "tp",
                                      "stages",
                                      "microbatches",
                                      "schedule",
                                      "virtual_stages",
                                      "batch_shares",
                                      "partition",
                                      "layer_costs",
                                      "ps",
                                      "memory",
                                      "balance",
                                      "predicted_step_seconds"};

/// A measured device's throughput on the whole model, samples per second
/// (0: not measured).
double samples_per_second(const device_slot& d) {
  double sum = 0;
  for (double s : d.layer_seconds)
    sum += s;
  return sum > 0 && d.profile_microbatch > 0 ? static_cast<double>(d.profile_microbatch) / sum
                                             : 0.0;
}

[[noreturn]] void bad(const std::string& field, const std::string& why) {
  throw runtime::input_error("plan: " + field + ": " + why);
}

std::string device_label(const device_slot& d) {
  return d.node + "/" + d.name;
}

json chunk_json(const models::layer_range& c) {
  return json::array({c.begin, c.end});
}

const json& need(const json& obj, const std::string& key, const std::string& where) {
  auto it = obj.find(key);
  if (it == obj.end())
    bad(where.empty() ? key : where, where.empty() ? "missing" : "missing \"" + key + "\"");
  return *it;
}

std::string field_name(const std::string& where, const std::string& key) {
  return where.empty() ? key : where + "." + key;
}

std::int64_t get_int(const json& obj, const std::string& key, const std::string& where,
                     std::int64_t min, std::int64_t max) {
  const auto& v = need(obj, key, where);
  const auto name = field_name(where, key);
  if (!v.is_number_integer())
    bad(name, "must be an integer, got " + v.dump());
  auto n = v.get<std::int64_t>();
  if (n < min || n > max)
    bad(name, fmt::format("must be in [{}, {}], got {}", min, max, n));
  return n;
}

std::string get_string(const json& obj, const std::string& key, const std::string& where) {
  const auto& v = need(obj, key, where);
  if (!v.is_string() || v.get<std::string>().empty())
    bad(field_name(where, key), "must be a non-empty string, got " + v.dump());
  return v.get<std::string>();
}

const json& get_array(const json& obj, const std::string& key, const std::string& where) {
  const auto& v = need(obj, key, where);
  if (!v.is_array())
    bad(field_name(where, key), "must be an array, got " + v.dump());
  return v;
}

/// The index into `devices` of the device an object names by "node" and
/// "device" (its name).
std::size_t find_device(const json& obj, const std::string& where,
                        const std::map<std::pair<std::string, std::string>, std::size_t>& index) {
  auto node = get_string(obj, "node", where);
  auto name = get_string(obj, "device", where);
  auto it = index.find({node, name});
  if (it == index.end())
    bad(where, "device " + node + "/" + name + " is not one of \"devices\"");
  return it->second;
}

models::layer_range parse_chunk(const json& c, const std::string& where, std::size_t layers) {
  if (!c.is_array() || c.size() != 2 || !c[0].is_number_integer() || !c[1].is_number_integer())
    bad(where, "a chunk must be [begin, end], got " + c.dump());
  auto b = c[0].get<std::int64_t>(), e = c[1].get<std::int64_t>();
  if (b < 0 || b >= e || e > static_cast<std::int64_t>(layers))
    bad(where, fmt::format("chunk [{}, {}) is not a non-empty range of the model's {} layers", b, e,
                           layers));
  return {static_cast<std::size_t>(b), static_cast<std::size_t>(e)};
}

/// (name, stage, element count) of every parameter, in model order, as
/// make_plan gives them to the parameter servers.
std::vector<ps_param_info> expected_ps_params(const plan& p) {
  std::vector<ps_param_info> r;
  for (int s = 0; s < p.depth(); ++s)
    for (const auto& c : p.slot(0, s).chunks)
      for (auto i = c.begin; i < c.end; ++i) {
        auto layer = models::make_layer(p.model.layers[i], i);
        for (const auto& prm : layer->parameters())
          r.push_back({prm.name, s, prm.value.numel()});
      }
  return r;
}

std::string param_text(const ps_param_info& i) {
  return fmt::format("{} (stage {}, {} elements)", i.name, i.stage, i.numel);
}

void parse_ps(const json& j, plan& p,
              const std::map<std::pair<std::string, std::string>, std::size_t>& index) {
  if (!j.is_object())
    bad("ps", "must be null or an object, got " + j.dump());
  for (auto it = j.begin(); it != j.end(); ++it)
    if (it.key() != "shards" && it.key() != "mode" && it.key() != "staleness" &&
        it.key() != "layout")
      bad("ps", "unknown field \"" + it.key() + "\"");
  const auto& shards = get_array(j, "shards", "ps");
  if (shards.empty())
    bad("ps.shards", "must name at least one shard (or \"ps\": null for none)");
  for (std::size_t i = 0; i < shards.size(); ++i) {
    const auto where = fmt::format("ps.shards[{}]", i);
    if (!shards[i].is_object())
      bad(where, "must be an object, got " + shards[i].dump());
    auto shard = get_int(shards[i], "shard", where, 0, 4095);
    if (shard != static_cast<std::int64_t>(i))
      bad(where,
          fmt::format("shard {} at position {} (shards must be listed 0, 1, ...)", shard, i));
    auto d = find_device(shards[i], where, index);
    if (p.devices[d].where.is_cuda())
      bad(where, "parameter servers need a CPU device, " + device_label(p.devices[d]) + " is " +
                     runtime::to_string(p.devices[d].where));
    p.ps_shards.push_back({static_cast<int>(i), d});
  }
  const auto mode = get_string(j, "mode", "ps");
  if (auto m = try_parse_ps_mode(mode))
    p.ps_mode = *m;
  else
    bad("ps.mode", "must be sync, async or ssp, got '" + mode + "'");
  p.staleness = static_cast<int>(get_int(j, "staleness", "ps", 0, 1000000));
  if (p.staleness != 0 && p.ps_mode != ps_mode::ssp)
    bad("ps.staleness",
        fmt::format("{} needs mode ssp, not {}", p.staleness, to_string(p.ps_mode)));
  if (p.tp > 1)
    bad("ps", "parameter servers with tp > 1 are not supported");
  try {
    p.ps_layout = ps_assignment_from_json(need(j, "layout", "ps"));
  } catch (const runtime::input_error& e) {
    bad("ps.layout", e.what());
  }
  if (p.ps_layout.shards != static_cast<int>(p.ps_shards.size()))
    bad("ps.layout", fmt::format("spreads the parameters over {} shards, \"ps.shards\" has {}",
                                 p.ps_layout.shards, p.ps_shards.size()));
  auto want = expected_ps_params(p);
  const auto& got = p.ps_layout.params;
  for (std::size_t i = 0; i < std::max(want.size(), got.size()); ++i) {
    if (i < want.size() && i < got.size() && want[i] == got[i])
      continue;
    bad("ps.layout",
        fmt::format("its parameters do not match the model and stages: parameter {} is {}, "
                    "the plan's stages hold {}",
                    i, i < got.size() ? param_text(got[i]) : "missing",
                    i < want.size() ? param_text(want[i]) : "nothing more"));
  }
}

std::string format_bytes(std::uint64_t b) {
  const double x = static_cast<double>(b);
  if (b < 1024)
    return fmt::format("{} B", b);
  if (b < (std::uint64_t{1} << 20))
    return fmt::format("{:.1f} KiB", x / 1024);
  if (b < (std::uint64_t{1} << 30))
    return fmt::format("{:.1f} MiB", x / (1 << 20));
  return fmt::format("{:.2f} GiB", x / (1 << 30));
}

json assumptions_json(const memory_assumptions& a) {
  json j{{"optimizer", a.optimizer}, {"batch", a.batch}};
  if (a.optimizer == "sgd")
    j["momentum"] = a.momentum;
  return j;
}

} // namespace

json to_json(const plan& p) {
  return to_json(p, memory_assumptions{});
}

json to_json(const plan& p, const memory_assumptions& a) {
  // A plan built or edited in C++ (run_training's overload) may be off.
  for (std::size_t i = 0; i < p.stages.size(); ++i)
    if (p.stages[i].device >= p.devices.size())
      bad(fmt::format("stages[{}]", i),
          fmt::format("device index {} out of range (the plan has {} devices)", p.stages[i].device,
                      p.devices.size()));
  for (std::size_t i = 0; i < p.ps_shards.size(); ++i)
    if (p.ps_shards[i].device >= p.devices.size())
      bad(fmt::format("ps.shards[{}]", i),
          fmt::format("device index {} out of range (the plan has {} devices)",
                      p.ps_shards[i].device, p.devices.size()));
  json devices = json::array();
  for (const auto& d : p.devices)
    devices.push_back({{"name", d.name},
                       {"node", d.node},
                       {"device", runtime::to_string(d.where)},
                       {"threads", d.threads},
                       {"gflops", d.gflops},
                       {"samples_per_second", samples_per_second(d)}});
  json stages = json::array();
  for (const auto& s : p.stages) {
    json chunks = json::array();
    for (const auto& c : s.chunks)
      chunks.push_back(chunk_json(c));
    json j{{"replica", s.replica},
           {"stage", s.stage},
           {"tp_rank", s.tp_rank},
           {"chunks", chunks},
           {"device", p.devices.at(s.device).name},
           {"node", p.devices.at(s.device).node}};
    if (s.chunks.size() == 1)
      j["layers"] = chunks[0];
    stages.push_back(std::move(j));
  }
  json ps = nullptr;
  if (!p.ps_shards.empty()) {
    json shards = json::array();
    for (const auto& s : p.ps_shards)
      shards.push_back({{"shard", s.shard},
                        {"device", p.devices.at(s.device).name},
                        {"node", p.devices.at(s.device).node}});
    ps = {{"shards", shards},
          {"mode", std::string{to_string(p.ps_mode)}},
          {"staleness", p.staleness},
          {"layout", to_json(p.ps_layout)}};
  }
  json memory = json::array();
  const auto estimate = estimate_memory(p, a);
  for (std::size_t i = 0; i < estimate.size(); ++i) {
    const auto& m = estimate[i];
    memory.push_back({{"device", p.devices[i].name},
                      {"node", p.devices[i].node},
                      {"parameters", m.parameters},
                      {"gradients", m.gradients},
                      {"optimizer_state", m.optimizer_state},
                      {"activations", m.activations},
                      {"total", m.total()}});
  }
  return {{"strategy", p.strategy()},
          {"model", p.model.to_json()},
          {"devices", devices},
          {"depth", p.depth()},
          {"replicas", p.replicas},
          {"tp", p.tp},
          {"stages", stages},
          {"microbatches", p.microbatches},
          {"schedule", std::string{to_string(p.schedule)}},
          {"virtual_stages", p.virtual_stages},
          {"batch_shares", p.batch_shares},
          {"partition", p.partition},
          {"layer_costs", p.layer_costs},
          {"balance", std::string{to_string(p.balance)}},
          {"predicted_step_seconds", p.predicted_step_seconds},
          {"ps", ps},
          {"memory", {{"assumptions", assumptions_json(a)}, {"devices", memory}}}};
}

namespace {

/// plan.devices, unique by (node, name); returns each one's index by (node, name).
std::map<std::pair<std::string, std::string>, std::size_t> parse_devices(const json& j, plan& p) {
  std::map<std::pair<std::string, std::string>, std::size_t> index;
  const auto& devices = get_array(j, "devices", "");
  if (devices.empty())
    bad("devices", "must list at least one device");
  for (std::size_t i = 0; i < devices.size(); ++i) {
    const auto where = fmt::format("devices[{}]", i);
    const auto& d = devices[i];
    if (!d.is_object())
      bad(where, "must be an object, got " + d.dump());
    for (auto it = d.begin(); it != d.end(); ++it)
      if (it.key() != "name" && it.key() != "node" && it.key() != "device" &&
          it.key() != "threads" && it.key() != "gflops" && it.key() != "samples_per_second")
        bad(where, "unknown field \"" + it.key() + "\"");
    device_slot slot;
    slot.name = get_string(d, "name", where);
    slot.node = get_string(d, "node", where);
    auto kind = get_string(d, "device", where);
    auto parsed = runtime::parse_device(kind);
    if (!parsed)
      bad(where + ".device", "'" + kind + "' is not a device (cpu or cuda:N)");
    slot.where = *parsed;
    slot.threads = static_cast<int>(get_int(d, "threads", where, 1, 1024));
    if (auto g = d.find("gflops"); g != d.end()) {
      if (!g->is_number() || !std::isfinite(g->get<double>()) || g->get<double>() < 0)
        bad(where + ".gflops", "must be a number >= 0, got " + g->dump());
      slot.gflops = g->get<double>();
    }
    if (!index.emplace(std::pair{slot.node, slot.name}, i).second)
      bad(where, "device " + device_label(slot) + " is listed twice");
    p.devices.push_back(std::move(slot));
  }

  return index;
}

/// Degrees and the schedule; returns the depth (stages per replica).
int parse_degrees(const json& j, plan& p) {
  const auto layers = p.model.layers.size();
  const auto depth = static_cast<int>(get_int(j, "depth", "", 1, 64));
  p.replicas = static_cast<int>(get_int(j, "replicas", "", 1, 1024));
  p.tp = static_cast<int>(get_int(j, "tp", "", 1, 64));
  p.microbatches = static_cast<int>(get_int(j, "microbatches", "", 1, 1 << 20));
  p.virtual_stages = static_cast<int>(get_int(j, "virtual_stages", "", 1, 64));
  try {
    p.schedule = parse_schedule_kind(get_string(j, "schedule", ""));
  } catch (const runtime::input_error& e) {
    bad("schedule", e.what());
  }
  if (p.virtual_stages > 1 && p.schedule != schedule_kind::interleaved &&
      p.schedule != schedule_kind::zbv)
    bad("virtual_stages", fmt::format("{} needs schedule interleaved, not {}", p.virtual_stages,
                                      to_string(p.schedule)));
  if (p.schedule == schedule_kind::zbv && p.virtual_stages != 2)
    bad("virtual_stages",
        fmt::format("{}: schedule zbv runs two chunks per device", p.virtual_stages));
  if (static_cast<std::size_t>(depth * p.virtual_stages) > layers)
    bad("depth",
        fmt::format("{} stages x {} virtual stages need {} chunks, model {} has {} layers", depth,
                    p.virtual_stages, depth * p.virtual_stages, p.model.name, layers));
  if (p.tp > 1) {
    try {
      (void)models::tp_layout(p.model, p.tp);
    } catch (const std::invalid_argument& e) {
      bad("tp", e.what());
    }
  }

  return depth;
}

/// Stage slots, at slot_grid order ((r * depth + k) * tp + t), every
/// replica and tp rank of a stage holding the same chunks.
void parse_stages(const json& j, plan& p, int depth,
                  const std::map<std::pair<std::string, std::string>, std::size_t>& index) {
  const auto layers = p.model.layers.size();
  const auto& stages = get_array(j, "stages", "");
  const auto want = static_cast<std::size_t>(p.replicas) * static_cast<std::size_t>(depth) *
                    static_cast<std::size_t>(p.tp);
  if (stages.size() != want)
    bad("stages", fmt::format("has {} slots, replicas {} x depth {} x tp {} needs {}",
                              stages.size(), p.replicas, depth, p.tp, want));
  for (std::size_t i = 0; i < stages.size(); ++i) {
    const auto where = fmt::format("stages[{}]", i);
    const auto& s = stages[i];
    if (!s.is_object())
      bad(where, "must be an object, got " + s.dump());
    for (auto it = s.begin(); it != s.end(); ++it)
      if (it.key() != "replica" && it.key() != "stage" && it.key() != "tp_rank" &&
          it.key() != "chunks" && it.key() != "layers" && it.key() != "device" &&
          it.key() != "node")
        bad(where, "unknown field \"" + it.key() + "\"");
    const auto n = static_cast<int>(i);
    const int r = n / (depth * p.tp), k = n / p.tp % depth, t = n % p.tp;
    stage_slot slot;
    slot.replica = static_cast<int>(get_int(s, "replica", where, 0, 1 << 20));
    slot.stage = static_cast<int>(get_int(s, "stage", where, 0, 1 << 20));
    slot.tp_rank = static_cast<int>(get_int(s, "tp_rank", where, 0, 1 << 20));
    if (slot.replica != r || slot.stage != k || slot.tp_rank != t)
      bad(where, fmt::format("is replica {} stage {} tp rank {}, but slot {} must be replica {} "
                             "stage {} tp rank {} (slots are ordered replica, stage, tp rank)",
                             slot.replica, slot.stage, slot.tp_rank, i, r, k, t));
    const auto& chunks = get_array(s, "chunks", where);
    if (chunks.size() != static_cast<std::size_t>(p.virtual_stages))
      bad(where + ".chunks",
          fmt::format("has {} chunks, virtual_stages is {}", chunks.size(), p.virtual_stages));
    for (std::size_t v = 0; v < chunks.size(); ++v)
      slot.chunks.push_back(parse_chunk(chunks[v], fmt::format("{}.chunks[{}]", where, v), layers));
    if (auto l = s.find("layers"); l != s.end() && *l != chunk_json(slot.chunks.front()))
      bad(where + ".layers", l->dump() + " disagrees with \"chunks\" " + chunks.dump() +
                                 " (\"layers\" only repeats a single chunk)");
    slot.device = find_device(s, where, index);
    if (i >= static_cast<std::size_t>(p.tp) * static_cast<std::size_t>(depth) ||
        slot.tp_rank != 0) {
      const auto& first = p.stages.at(static_cast<std::size_t>(k * p.tp));
      if (slot.chunks != first.chunks)
        bad(where + ".chunks",
            fmt::format("{} differs from replica 0 tp rank 0 of stage {} ({}): every replica and "
                        "tp rank of a stage holds the same layers",
                        models::to_string(slot.chunks), k, models::to_string(first.chunks)));
    }
    p.stages.push_back(std::move(slot));
  }
}

/// In global virtual stage order (the schedule's chunk layout) the chunks
/// cover the layers contiguously.
void check_chunk_order(const plan& p, int depth) {
  const auto layers = p.model.layers.size();
  std::vector<models::layer_range> order;
  for (int s = 0; s < p.virtual_stages * depth; ++s) {
    const auto at = position_of(layout_of(p.schedule), depth, s);
    order.push_back(p.stages[static_cast<std::size_t>(at.stage * p.tp)]
                        .chunks[static_cast<std::size_t>(at.chunk)]);
  }
  try {
    models::validate_partition(order, layers);
  } catch (const std::invalid_argument& e) {
    bad("stages", fmt::format("the chunks in pipeline order ({}) do not cover model {}'s {} layers "
                              "contiguously: {}",
                              models::to_string(order), p.model.name, layers, e.what()));
  }
}

/// Batch shares, the partition and its layer costs.
void parse_shares_and_costs(const json& j, plan& p) {
  const auto layers = p.model.layers.size();
  const auto& shares = get_array(j, "batch_shares", "");
  if (shares.size() != static_cast<std::size_t>(p.replicas))
    bad("batch_shares",
        fmt::format("has {} shares, the plan has {} replicas", shares.size(), p.replicas));
  p.batch_shares.clear();
  for (const auto& w : shares) {
    if (!w.is_number() || !std::isfinite(w.get<double>()) || !(w.get<double>() > 0))
      bad("batch_shares", "every share must be a positive number, got " + w.dump());
    p.batch_shares.push_back(w.get<double>());
  }
  p.partition = get_string(j, "partition", "");
  if (p.partition != "flops" && p.partition != "measured" && p.partition != "explicit")
    bad("partition", "must be flops, measured or explicit, got '" + p.partition + "'");
  const auto& costs = get_array(j, "layer_costs", "");
  if (!costs.empty() && costs.size() != layers)
    bad("layer_costs",
        fmt::format("has {} costs, model {} has {} layers", costs.size(), p.model.name, layers));
  for (const auto& c : costs) {
    if (!c.is_number() || !std::isfinite(c.get<double>()) || c.get<double>() < 0)
      bad("layer_costs", "every cost must be a number >= 0, got " + c.dump());
    p.layer_costs.push_back(c.get<double>());
  }
}

} // namespace

plan plan_from_json(const json& j) {
  if (!j.is_object())
    throw runtime::input_error("plan: must be a JSON object, got " + std::string{j.type_name()});
  for (auto it = j.begin(); it != j.end(); ++it)
    if (!plan_keys.count(it.key()))
      bad(it.key(), "unknown field");
  plan p;
  try {
    p.model = models::model_spec::from_json(need(j, "model", ""));
  } catch (const std::invalid_argument& e) {
    bad("model", e.what());
  }
  const auto index = parse_devices(j, p);
  const int depth = parse_degrees(j, p);
  parse_stages(j, p, depth, index);
  check_chunk_order(p, depth);
  parse_shares_and_costs(j, p);
  // Parameter servers.
  if (auto ps = j.find("ps"); ps != j.end() && !ps->is_null())
    parse_ps(*ps, p, index);
  return p;
}

std::string describe(const plan& p) {
  return describe(p, memory_assumptions{});
}

namespace {

// fmt rather than operator+ chains below: g++ 12 reports a bogus -Wrestrict on those.

/// "<slot name>: layers [b, e) types... (cost) on node/device (threads)" per stage slot.
std::string describe_stages(const plan& p) {
  std::string r;
  const auto grid = p.grid();
  for (const auto& s : p.stages) {
    const auto& d = p.devices.at(s.device);
    r += grid.name(s.id()) + ": layers";
    for (std::size_t v = 0; v < s.chunks.size(); ++v) {
      const auto& c = s.chunks[v];
      r += fmt::format("{} {}", v == 0 ? "" : " |", models::to_string(c));
      for (auto i = c.begin; i < c.end; ++i)
        r += fmt::format(" {}", p.model.layers.at(i).at("type").get<std::string>());
    }
    double cost = 0;
    for (const auto& c : s.chunks)
      for (auto i = c.begin; i < c.end; ++i)
        cost += p.balance == balance_mode::automatic
                    ? layer_cost(p, s.replica, s.stage, s.tp_rank, i)
                : i < p.layer_costs.size() ? p.layer_costs[i]
                                           : 0.0;
    const auto cost_text =
        p.balance == balance_mode::automatic
            ? fmt::format("{:.3f} ms per micro-batch of {} here", cost * 1e3, d.profile_microbatch)
        : p.partition == "measured" ? fmt::format("{:.3f} ms", cost * 1e3)
                                    : fmt::format("{:.1f} MFLOP", cost / 1e6);
    const auto speed = samples_per_second(d);
    r += fmt::format(" ({}) on {}/{} ({} thread{}{})\n", cost_text, d.node, d.name, d.threads,
                     d.threads == 1 ? "" : "s",
                     speed > 0 ? fmt::format(", measured {:.0f} samples/s, link {:.0f} MB/s", speed,
                                             d.link_bytes_per_second / 1e6)
                               : "");
  }
  return r;
}

/// The data-parallel groups (one per stage and tp rank, across the replicas)
/// and the tensor-parallel groups (one per replica and stage).
std::string describe_groups(const plan& p) {
  std::string r;
  auto where = [&](int rep, int k, int t) {
    return device_label(p.devices.at(p.slot(rep, k, t).device));
  };
  const int depth = p.depth();
  const slot_grid one_replica{1, depth, p.tp};
  if (p.replicas > 1 && p.ps_shards.empty()) {
    r += fmt::format("data-parallel groups (gradients all-reduced across the {} replicas):\n",
                     p.replicas);
    for (int k = 0; k < depth; ++k)
      for (int t = 0; t < p.tp; ++t) {
        r += "  " + one_replica.name({0, k, t}) + ":";
        for (int rep = 0; rep < p.replicas; ++rep)
          r += fmt::format(" {}", where(rep, k, t));
        r += "\n";
      }
  }
  if (p.tp > 1) {
    r += fmt::format("tensor-parallel groups (each stage split across {} ranks):\n", p.tp);
    const slot_grid no_tp{p.replicas, depth, 1};
    for (int rep = 0; rep < p.replicas; ++rep)
      for (int k = 0; k < depth; ++k) {
        r += "  " + no_tp.name({rep, k, 0}) + ":";
        for (int t = 0; t < p.tp; ++t)
          r += fmt::format(" {}", where(rep, k, t));
        r += "\n";
      }
  }
  return r;
}

/// The parameter servers: mode, and each shard's device, bytes and pieces.
std::string describe_ps(const plan& p) {
  std::string r = fmt::format("parameter servers ({}", to_string(p.ps_mode));
  if (p.ps_mode == ps_mode::ssp)
    r += fmt::format(", staleness {}", p.staleness);
  r += fmt::format("; the {} replica(s) push gradients and pull parameters):\n", p.replicas);
  const auto bytes = p.ps_layout.bytes_per_shard();
  for (const auto& s : p.ps_shards) {
    std::size_t pieces = 0;
    for (const auto& piece : p.ps_layout.pieces)
      pieces += piece.shard == s.shard ? 1 : 0;
    const auto i = static_cast<std::size_t>(s.shard);
    r += fmt::format("  ps {} on {}: {} of parameters in {} piece{}\n", s.shard,
                     device_label(p.devices.at(s.device)),
                     format_bytes(i < bytes.size() ? bytes[i] : 0), pieces, pieces == 1 ? "" : "s");
  }
  return r;
}

/// The memory estimate of every device (plan_memory).
std::string describe_memory(const plan& p, const memory_assumptions& a) {
  const auto estimate = estimate_memory(p, a);
  std::string r = fmt::format("memory per device (estimate for {}", a.optimizer);
  if (a.optimizer == "sgd")
    r += fmt::format(" momentum {}", a.momentum);
  r += fmt::format(", global batch {}):\n", a.batch);
  for (std::size_t i = 0; i < estimate.size(); ++i) {
    const auto& m = estimate[i];
    r += fmt::format("  {}: {} (parameters {}, gradients {}, optimizer state {}, activations {})\n",
                     device_label(p.devices.at(i)), format_bytes(m.total()),
                     format_bytes(m.parameters), format_bytes(m.gradients),
                     format_bytes(m.optimizer_state), format_bytes(m.activations));
  }
  return r;
}

} // namespace

std::string describe(const plan& p, const memory_assumptions& a) {
  std::string r = describe_stages(p);
  if (p.replicas > 1) {
    r += "batch shares:";
    for (double w : p.batch_shares)
      r += fmt::format(" {:.4g}", w);
    r += "\n";
  }
  if (p.balance == balance_mode::automatic)
    r += fmt::format("balanced by measured speed (--balance auto): predicted step {:.2f} ms\n",
                     p.predicted_step_seconds * 1e3);
  r += describe_groups(p);
  if (!p.ps_shards.empty())
    r += describe_ps(p);
  return r + describe_memory(p, a);
}

} // namespace troupe::actors
