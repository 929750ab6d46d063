#include "actors/ps/ps_checkpoint.hpp"

#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "runtime/error.hpp"

namespace troupe::actors::ps_detail {

using runtime::input_error;

runtime::named_tensors get_params(ps_actor* self) {
  auto& st = self->state;
  runtime::named_tensors r;
  r.meta_keys.push_back("shard");
  r.meta_values.push_back(std::to_string(st.cfg.shard));
  for (const auto& s : st.stages) {
    for (const auto& p : s.params) {
      r.names.push_back(p.name);
      r.tensors.push_back(p.value);
    }
    r.meta_keys.push_back("version." + std::to_string(s.stage));
    r.meta_values.push_back(std::to_string(s.version));
  }
  return r;
}

runtime::named_tensors get_state(ps_actor* self) {
  auto& st = self->state;
  runtime::named_tensors r;
  std::set<std::int64_t> steps;
  for (const auto& s : st.stages) {
    for (const auto& [name, t] : s.opt->state()) {
      r.names.push_back(name);
      r.tensors.push_back(t);
    }
    r.meta_keys.push_back("steps." + std::to_string(s.stage));
    r.meta_values.push_back(std::to_string(s.opt->steps()));
    steps.insert(s.opt->steps());
  }
  if (steps.size() == 1) {
    r.meta_keys.push_back("steps");
    r.meta_values.push_back(std::to_string(*steps.begin()));
  }
  return r;
}

void set_params(ps_actor* self, const runtime::named_tensors& in) {
  auto& st = self->state;
  if (in.names.size() != in.tensors.size())
    throw input_error("parameters: " + std::to_string(in.names.size()) + " names for " +
                      std::to_string(in.tensors.size()) + " tensors");
  std::map<std::string, models::parameter*> by_name;
  for (auto& s : st.stages)
    for (auto& p : s.params)
      by_name.emplace(p.name, &p);
  std::map<std::string, tensor> fresh;
  for (std::size_t i = 0; i < in.names.size(); ++i) {
    const auto& name = in.names[i];
    const auto& t = in.tensors[i];
    auto it = by_name.find(name);
    if (it == by_name.end())
      throw input_error("parameters: '" + name + "' is no piece of this shard");
    const auto n = it->second->value.numel();
    if (!t.defined() || t.type() != runtime::dtype::f32 || t.numel() != n || !t.where().is_cpu())
      throw input_error("parameters: '" + name + "' must be an f32 host tensor of " +
                        std::to_string(n) + " elements");
    if (!fresh.emplace(name, t.reshape({n})).second)
      throw input_error("parameters: '" + name + "' appears twice");
  }
  for (const auto& [name, p] : by_name)
    if (fresh.count(name) == 0)
      throw input_error("parameters: piece '" + name + "' is missing");
  for (auto& [name, t] : fresh)
    by_name.at(name)->value = std::move(t); // shared; the optimizer copies on write
  for (auto& s : st.stages)
    s.snapshot = tensor{};
}

void set_state(ps_actor* self, const runtime::named_tensors& in) {
  auto& st = self->state;
  if (in.names.size() != in.tensors.size())
    throw input_error("optimizer state: " + std::to_string(in.names.size()) + " names for " +
                      std::to_string(in.tensors.size()) + " tensors");
  auto meta = [&](const std::string& key) -> std::optional<std::int64_t> {
    for (std::size_t i = 0; i < in.meta_keys.size() && i < in.meta_values.size(); ++i)
      if (in.meta_keys[i] == key) {
        try {
          return std::stoll(in.meta_values[i]);
        } catch (const std::exception&) {
          throw input_error("optimizer state: meta '" + key + "' = '" + in.meta_values[i] +
                            "' is not a step count");
        }
      }
    return std::nullopt;
  };
  // Each tensor to the stage holding its piece.
  std::map<std::string, stage_data*> owner;
  for (auto& s : st.stages)
    for (const auto& p : s.params)
      owner.emplace(p.name, &s);
  std::map<std::int32_t, models::named_tensors> per_stage;
  for (std::size_t i = 0; i < in.names.size(); ++i) {
    const auto& name = in.names[i];
    auto dot = name.rfind('.');
    auto it = dot == std::string::npos ? owner.end() : owner.find(name.substr(0, dot));
    if (it == owner.end())
      throw input_error("optimizer state: '" + name + "' names no piece of this shard");
    per_stage[it->second->stage].emplace_back(name, in.tensors[i]);
  }
  // Validate every stage's state before loading any (load_state validates its own).
  std::vector<std::pair<stage_data*, std::int64_t>> steps;
  for (auto& s : st.stages) {
    auto n = meta("steps." + std::to_string(s.stage));
    if (!n)
      n = meta("steps");
    if (!n)
      throw input_error("optimizer state without a step count for stage " +
                        std::to_string(s.stage) + " ('steps." + std::to_string(s.stage) +
                        "' or 'steps')");
    steps.emplace_back(&s, *n);
  }
  for (auto& [s, n] : steps) {
    try {
      auto copy = models::make_optimizer(s->opt->config());
      copy->load_state(s->ptrs, per_stage[s->stage], n);
    } catch (const std::invalid_argument& e) {
      throw input_error(std::string{"optimizer state: "} + e.what());
    }
  }
  for (auto& [s, n] : steps)
    s->opt->load_state(s->ptrs, per_stage[s->stage], n);
}

} // namespace troupe::actors::ps_detail
