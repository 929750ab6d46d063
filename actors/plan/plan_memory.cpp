#include "actors/plan/plan_memory.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include <fmt/format.h>

#include "actors/plan/schedule.hpp"
#include "models/layers/layer_registry.hpp"
#include "models/tensor_parallel.hpp"
#include "runtime/error.hpp"

namespace troupe::actors {

memory_assumptions memory_assumptions::of(const train_options& opts) {
  return {opts.optimizer, opts.momentum, opts.batch};
}

int memory_assumptions::state_slots() const {
  if (optimizer == "adam" || optimizer == "adamw")
    return 2;
  if (optimizer == "sgd")
    return momentum > 0 ? 1 : 0;
  throw runtime::input_error("memory estimate: unknown optimizer '" + optimizer +
                             "' (expected sgd, adam or adamw)");
}

namespace {

constexpr std::uint64_t f32_bytes = 4;

/// Elements of every parameter of each layer, as tensor-parallel rank `rank`
/// holds them (the whole parameter when tp == 1 or it is replicated).
std::vector<std::int64_t> layer_elements(const models::model_spec& spec,
                                         const models::tp_layout_map* layout, int rank) {
  std::vector<std::int64_t> r;
  for (std::size_t i = 0; i < spec.layers.size(); ++i) {
    auto layer = models::make_layer(spec.layers[i], i);
    std::int64_t n = 0;
    for (const auto& prm : layer->parameters()) {
      const models::tp_param_split* split = nullptr;
      if (layout)
        if (auto it = layout->find(prm.name); it != layout->end())
          split = &it->second.at(static_cast<std::size_t>(rank));
      n += split && !split->replicated()
               ? runtime::shape_numel(models::tp_slice_shape(prm.value.shape(), *split, prm.name))
               : prm.value.numel();
    }
    r.push_back(n);
  }
  return r;
}

/// Per-sample output elements of each layer.
std::vector<std::int64_t> layer_outputs(const models::model_spec& spec) {
  auto shapes = models::activation_shapes(spec);
  std::vector<std::int64_t> r;
  for (std::size_t i = 1; i < shapes.size(); ++i)
    r.push_back(runtime::shape_numel(shapes[i]));
  return r;
}

/// Samples in one micro-batch of `replica` (rounded up: the largest one).
std::int64_t microbatch_size(const plan& p, std::int64_t batch, int replica) {
  double total = 0;
  for (double w : p.batch_shares)
    total += w;
  const auto r = static_cast<std::size_t>(replica);
  const double share = r < p.batch_shares.size() && total > 0 ? p.batch_shares[r] / total
                                                              : 1.0 / std::max(1, p.replicas);
  const auto samples = static_cast<std::int64_t>(std::ceil(static_cast<double>(batch) * share));
  const auto m = std::max(1, p.microbatches);
  return (samples + m - 1) / m;
}

} // namespace

std::vector<device_memory> estimate_memory(const plan& p, const memory_assumptions& a) {
  const auto slots = static_cast<std::uint64_t>(a.state_slots());
  if (a.batch < 1)
    throw runtime::input_error("memory estimate: batch must be >= 1, got " +
                               std::to_string(a.batch));
  std::vector<device_memory> r(p.devices.size());
  const bool use_ps = !p.ps_shards.empty();
  std::vector<std::vector<std::int64_t>> elements; // [tp rank][layer]
  std::vector<std::int64_t> outputs;
  try {
    if (p.tp > 1) {
      auto layout = models::tp_layout(p.model, p.tp);
      for (int t = 0; t < p.tp; ++t)
        elements.push_back(layer_elements(p.model, &layout, t));
    } else {
      elements.push_back(layer_elements(p.model, nullptr, 0));
    }
    outputs = layer_outputs(p.model);
  } catch (const std::invalid_argument& e) {
    throw runtime::input_error(std::string{"memory estimate: model: "} + e.what());
  }
  for (const auto& s : p.stages) {
    if (s.device >= r.size() || s.tp_rank < 0 || s.tp_rank >= p.tp)
      throw runtime::input_error(
          fmt::format("memory estimate: stage {} of replica {} has device index {} and tp rank "
                      "{}; the plan has {} devices and tp {}",
                      s.stage, s.replica, s.device, s.tp_rank, r.size(), p.tp));
    auto& m = r.at(s.device);
    const auto& counts = elements.at(static_cast<std::size_t>(s.tp_rank));
    std::uint64_t params = 0;
    std::vector<std::uint64_t> chunk_bytes;
    const auto mb = static_cast<std::uint64_t>(microbatch_size(p, a.batch, s.replica));
    for (const auto& c : s.chunks) {
      std::uint64_t out = 0;
      for (auto i = c.begin; i < c.end && i < counts.size(); ++i) {
        params += static_cast<std::uint64_t>(counts[i]) * f32_bytes;
        out += static_cast<std::uint64_t>(outputs[i]) * f32_bytes * mb;
      }
      chunk_bytes.push_back(out);
    }
    m.parameters += params;
    m.gradients += params;
    if (!use_ps)
      m.optimizer_state += slots * params;
    std::vector<action> actions;
    try {
      actions = make_schedule(p.schedule, p.depth(), s.stage, p.microbatches, p.virtual_stages);
    } catch (const std::invalid_argument& e) {
      throw runtime::input_error(std::string{"memory estimate: schedule: "} + e.what());
    }
    // A split backward keeps the layer inputs until the weight action.
    const auto frees = splits_backward(p.schedule) ? action::kind::weight : action::kind::backward;
    std::uint64_t held = 0, peak = 0;
    for (const auto& act : actions) {
      const auto bytes = chunk_bytes.at(static_cast<std::size_t>(act.chunk));
      if (act.what == action::kind::forward)
        peak = std::max(peak, held += bytes);
      else if (act.what == frees)
        held -= bytes;
    }
    m.activations += peak;
  }
  if (use_ps) {
    const auto per_shard = p.ps_layout.bytes_per_shard();
    for (const auto& s : p.ps_shards) {
      const auto bytes = static_cast<std::size_t>(s.shard) < per_shard.size()
                             ? per_shard[static_cast<std::size_t>(s.shard)]
                             : 0;
      if (s.device >= r.size())
        throw runtime::input_error(
            fmt::format("memory estimate: ps shard {} has device index {}; the plan has {} devices",
                        s.shard, s.device, r.size()));
      auto& m = r[s.device];
      m.parameters += bytes;
      m.gradients += bytes;
      m.optimizer_state += slots * bytes;
    }
  }
  return r;
}

} // namespace troupe::actors
