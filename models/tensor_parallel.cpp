#include "models/tensor_parallel.hpp"

#include <stdexcept>

#include "models/layers/causal_self_attention.hpp"
#include "models/layers/layer_registry.hpp"
#include "models/layers/tp_dense.hpp"
#include "models/layers/transformer_block.hpp"

namespace troupe::models {

namespace {

[[noreturn]] void bad(const std::string& what) {
  throw std::invalid_argument("tensor parallel: " + what);
}

std::string type_of(const nlohmann::json& layer_spec) {
  return layer_spec.at("type").get<std::string>();
}

std::int64_t field(const nlohmann::json& layer_spec, const char* name) {
  return layer_spec.at(name).get<std::int64_t>();
}

bool elementwise_activation(const std::string& type) {
  return type == "relu" || type == "gelu";
}

/// What tensor parallelism does with each layer of a model.
enum class layer_role { replicated, column, row, attention, block };

struct layer_plan {
  layer_role role = layer_role::replicated;
  std::size_t partner = 0; // the other dense of a column/row pair
};

std::vector<layer_plan> plan_of(const model_spec& spec) {
  std::vector<layer_plan> plan(spec.layers.size());
  for (std::size_t i = 0; i < spec.layers.size(); ++i) {
    const std::string type = type_of(spec.layers[i]);
    if (type == "causal_self_attention")
      plan[i].role = layer_role::attention;
    else if (type == "transformer_block")
      plan[i].role = layer_role::block;
  }
  for (auto [column, row] : tp_dense_pairs(spec)) {
    plan[column] = {layer_role::column, row};
    plan[row] = {layer_role::row, column};
  }
  return plan;
}

/// The share of rank `rank` of a column/row pair's units (the column layer's
/// output features).
tp_range pair_units(const model_spec& spec, std::size_t column, std::size_t row, int tp, int rank) {
  return tp_split_units(field(spec.layers[column], "out"), tp, rank,
                        "dense layer " + std::to_string(column) +
                            " (column-parallel, paired with dense layer " + std::to_string(row) +
                            ") output features");
}

tp_param_split split_of(int axis, tp_range r, std::int64_t full, std::int64_t blocks = 1) {
  tp_param_split s;
  s.axis = axis;
  s.offset = r.offset;
  s.extent = r.extent;
  s.full = full;
  s.blocks = blocks;
  return s;
}

/// Sets the splits of an existing parameter name of the layout.
void assign(tp_layout_map& layout, const std::string& name, std::vector<tp_param_split> splits) {
  auto it = layout.find(name);
  if (it == layout.end())
    throw std::logic_error("tensor parallel: the layout names a parameter '" + name +
                           "' that the layer does not have");
  it->second = std::move(splits);
}

/// Splits of attention parameters "<head>qkv.*" and "<head>proj.weight" for
/// `heads` heads of head_dim features over tp ranks.
void assign_attention(tp_layout_map& layout, const std::string& head, std::int64_t dim,
                      std::int64_t heads, int tp, const std::string& who) {
  const std::int64_t head_dim = dim / heads;
  std::vector<tp_param_split> qkv, proj;
  for (int r = 0; r < tp; ++r) {
    tp_range h = tp_split_units(heads, tp, r, who + " heads");
    tp_range features{h.offset * head_dim, h.extent * head_dim};
    qkv.push_back(split_of(0, features, dim, 3));
    proj.push_back(split_of(1, features, dim));
  }
  assign(layout, head + "qkv.weight", qkv);
  assign(layout, head + "qkv.bias", qkv);
  assign(layout, head + "proj.weight", proj);
}

} // namespace

std::vector<std::pair<std::size_t, std::size_t>> tp_dense_pairs(const model_spec& spec) {
  std::vector<std::pair<std::size_t, std::size_t>> pairs;
  const std::size_t n = spec.layers.size();
  for (std::size_t i = 0; i < n; ++i) {
    if (type_of(spec.layers[i]) != "dense")
      continue;
    std::size_t j = i + 1;
    while (j < n && elementwise_activation(type_of(spec.layers[j])))
      ++j;
    if (j < n && type_of(spec.layers[j]) == "dense") {
      pairs.emplace_back(i, j);
      i = j; // a row layer does not start another pair
    }
  }
  return pairs;
}

bool tp_splits_anything(const model_spec& spec, int tp) {
  if (tp <= 1)
    return false;
  for (const auto& p : plan_of(spec))
    if (p.role != layer_role::replicated)
      return true;
  return false;
}

tp_layout_map tp_layout(const model_spec& spec, int tp) {
  if (tp < 1)
    bad("the group size must be >= 1, got " + std::to_string(tp));
  activation_shapes(spec); // validates the spec
  const auto plan = plan_of(spec);
  const std::vector<tp_param_split> replicated(static_cast<std::size_t>(tp));
  tp_layout_map layout;
  for (std::size_t i = 0; i < spec.layers.size(); ++i) {
    const nlohmann::json& ls = spec.layers[i];
    const auto unsplit = make_layer(ls, i); // names only; never initialised
    for (const auto& p : unsplit->parameters())
      layout.emplace(p.name, replicated);
    if (tp == 1)
      continue;
    const std::string idx = std::to_string(i) + ".";
    switch (plan[i].role) {
    case layer_role::replicated:
      break;
    case layer_role::column: {
      std::vector<tp_param_split> rows;
      for (int r = 0; r < tp; ++r)
        rows.push_back(split_of(0, pair_units(spec, i, plan[i].partner, tp, r), field(ls, "out")));
      assign(layout, idx + "weight", rows);
      assign(layout, idx + "bias", rows);
      break;
    }
    case layer_role::row: {
      std::vector<tp_param_split> columns;
      for (int r = 0; r < tp; ++r)
        columns.push_back(
            split_of(1, pair_units(spec, plan[i].partner, i, tp, r), field(ls, "in")));
      assign(layout, idx + "weight", columns);
      break;
    }
    case layer_role::attention:
      assign_attention(layout, idx, field(ls, "dim"), field(ls, "heads"), tp,
                       "causal_self_attention layer " + std::to_string(i));
      break;
    case layer_role::block: {
      const std::string who = "transformer_block layer " + std::to_string(i);
      assign_attention(layout, idx + "attn.", field(ls, "dim"), field(ls, "heads"), tp, who);
      const std::int64_t hidden = field(ls, "hidden");
      std::vector<tp_param_split> rows, columns;
      for (int r = 0; r < tp; ++r) {
        tp_range h = tp_split_units(hidden, tp, r, who + " hidden units");
        rows.push_back(split_of(0, h, hidden));
        columns.push_back(split_of(1, h, hidden));
      }
      assign(layout, idx + "mlp.fc1.weight", rows);
      assign(layout, idx + "mlp.fc1.bias", rows);
      assign(layout, idx + "mlp.fc2.weight", columns);
      break;
    }
    }
  }
  return layout;
}

const std::vector<tp_param_split>* tp_find_splits(const tp_layout_map& layout,
                                                  std::string_view name) {
  auto it = layout.find(std::string{name});
  if (it != layout.end())
    return &it->second;
  const auto dot = name.rfind('.');
  if (dot == std::string_view::npos)
    return nullptr;
  it = layout.find(std::string{name.substr(0, dot)});
  return it == layout.end() ? nullptr : &it->second;
}

std::vector<parameter*> tp_norm_parameters(std::span<parameter* const> params,
                                           const tp_layout_map& layout, int rank) {
  std::vector<parameter*> out;
  for (parameter* p : params) {
    auto it = layout.find(p->name);
    if (it == layout.end())
      bad("parameter '" + p->name + "' is not in the layout");
    if (rank == 0 || !it->second.front().replicated())
      out.push_back(p);
  }
  return out;
}

sequential instantiate_tensor_parallel(const model_spec& spec, std::size_t begin, std::size_t end,
                                       std::uint64_t seed, std::shared_ptr<tp_group> group) {
  if (!group)
    bad("instantiate_tensor_parallel needs a tp_group");
  const int tp = group->size(), rank = group->rank();
  if (tp < 1 || rank < 0 || rank >= tp)
    bad("rank " + std::to_string(rank) + " of a group of " + std::to_string(tp) +
        " is out of range");
  if (tp == 1)
    return sequential(instantiate(spec, begin, end, seed));
  if (begin > end || end > spec.layers.size())
    bad("layer range [" + std::to_string(begin) + ", " + std::to_string(end) + ") outside the " +
        std::to_string(spec.layers.size()) + " layers of model '" + spec.name + "'");
  activation_shapes(spec); // validates the spec
  const auto plan = plan_of(spec);
  std::vector<std::unique_ptr<layer>> layers;
  layers.reserve(end - begin);
  for (std::size_t i = begin; i < end; ++i) {
    const nlohmann::json& ls = spec.layers[i];
    const std::size_t partner = plan[i].partner;
    std::unique_ptr<layer> l;
    switch (plan[i].role) {
    case layer_role::replicated:
      l = make_layer(ls, i);
      break;
    case layer_role::column:
      l = std::make_unique<tp_dense>(
          i, field(ls, "in"), field(ls, "out"),
          split_of(0, pair_units(spec, i, partner, tp, rank), field(ls, "out")), group,
          partner >= end);
      break;
    case layer_role::row:
      l = std::make_unique<tp_dense>(
          i, field(ls, "in"), field(ls, "out"),
          split_of(1, pair_units(spec, partner, i, tp, rank), field(ls, "in")), group,
          partner < begin);
      break;
    case layer_role::attention:
      l = std::make_unique<causal_self_attention>(i, field(ls, "dim"), field(ls, "heads"), "",
                                                  group);
      break;
    case layer_role::block:
      l = std::make_unique<transformer_block>(i, field(ls, "dim"), field(ls, "heads"),
                                              field(ls, "hidden"), group);
      break;
    }
    l->init(seed);
    layers.push_back(std::move(l));
  }
  return sequential(std::move(layers));
}

named_tensors tp_slice(const tp_layout_map& layout, int rank, const named_tensors& full) {
  named_tensors out;
  out.reserve(full.size());
  for (const auto& [name, t] : full) {
    const auto* splits = tp_find_splits(layout, name);
    if (!splits)
      bad("tensor '" + name + "' is neither a parameter of the model nor a parameter's state");
    if (rank < 0 || static_cast<std::size_t>(rank) >= splits->size())
      bad("rank " + std::to_string(rank) + " is outside the layout's " +
          std::to_string(splits->size()) + " ranks (tensor '" + name + "')");
    out.emplace_back(name, tp_take_slice(t, (*splits)[static_cast<std::size_t>(rank)], name));
  }
  return out;
}

named_tensors tp_merge(const tp_layout_map& layout, const std::vector<named_tensors>& per_rank) {
  if (per_rank.empty())
    bad("tp_merge needs the tensors of at least one rank");
  const std::size_t tp = per_rank.size();
  // Each rank's tensors by name, for lookups in rank 0's order.
  std::vector<std::map<std::string_view, const runtime::tensor*>> by_name(tp);
  for (std::size_t r = 0; r < tp; ++r)
    for (const auto& [name, t] : per_rank[r])
      if (!by_name[r].emplace(name, &t).second)
        bad("rank " + std::to_string(r) + " has tensor '" + name + "' twice");
  for (std::size_t r = 1; r < tp; ++r) {
    if (by_name[r].size() == by_name[0].size())
      continue;
    for (const auto& [name, t] : by_name[r])
      if (!by_name[0].count(name))
        bad("tensor '" + std::string{name} + "' of rank " + std::to_string(r) +
            " is missing on rank 0");
  }

  named_tensors out;
  out.reserve(per_rank[0].size());
  for (const auto& [name, first] : per_rank[0]) {
    const auto* splits = tp_find_splits(layout, name);
    if (!splits)
      bad("tensor '" + name + "' is neither a parameter of the model nor a parameter's state");
    if (splits->size() != tp)
      bad("tensor '" + name + "': the layout is for " + std::to_string(splits->size()) +
          " ranks, got tensors from " + std::to_string(tp));
    std::vector<const runtime::tensor*> parts(tp);
    for (std::size_t r = 0; r < tp; ++r) {
      auto it = by_name[r].find(name);
      if (it == by_name[r].end())
        bad("tensor '" + name + "' is missing on rank " + std::to_string(r));
      parts[r] = it->second;
      if (!parts[r]->defined() || parts[r]->type() != first.type())
        bad("tensor '" + name + "' of rank " + std::to_string(r) +
            " is undefined or differs in dtype from rank 0's");
    }
    const tp_param_split& s0 = (*splits)[0];
    if (s0.replicated()) {
      for (std::size_t r = 1; r < tp; ++r)
        if (parts[r]->shape() != first.shape())
          bad("replicated tensor '" + name + "' has shape " +
              runtime::to_string(parts[r]->shape()) + " on rank " + std::to_string(r) + " but " +
              runtime::to_string(first.shape()) + " on rank 0");
      out.emplace_back(name, first);
      continue;
    }
    // The ranks' slices must tile the axis, in rank order.
    std::int64_t next = 0;
    for (const auto& s : *splits) {
      if (s.axis != s0.axis || s.full != s0.full || s.blocks != s0.blocks || s.offset != next)
        bad("the layout of tensor '" + name + "' does not tile its axis in rank order");
      next += s.extent;
    }
    if (next != s0.full)
      bad("the layout of tensor '" + name + "' does not cover its axis");
    if (first.rank() <= static_cast<std::size_t>(s0.axis))
      bad("tensor '" + name + "' of shape " + runtime::to_string(first.shape()) + " has no axis " +
          std::to_string(s0.axis) + " to merge along");
    runtime::shape_t full_shape = first.shape();
    full_shape[static_cast<std::size_t>(s0.axis)] = s0.blocks * s0.full;
    runtime::tensor full = runtime::tensor::empty(first.type(), std::move(full_shape));
    for (std::size_t r = 0; r < tp; ++r)
      tp_put_slice(full, *parts[r], (*splits)[r], name + " (rank " + std::to_string(r) + ")");
    out.emplace_back(name, std::move(full));
  }
  return out;
}

} // namespace troupe::models
