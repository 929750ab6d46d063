#include "actors/training/model_gather.hpp"

#include <exception>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <utility>

#include "actors/plan/ps_assignment.hpp"

namespace troupe::actors::training {

namespace {

/// One collect_model in progress: what it asked for and the replies so far.
struct model_gathering {
  bool with_state = false;
  std::function<void(model_state)> done;
  std::vector<runtime::named_tensors> params; ///< replica 0's shards or the ps shards
  std::vector<runtime::named_tensors> state;
  std::map<std::string, runtime::shape_t> shapes; ///< ps: whole shapes, from the workers
};

using gathering = std::shared_ptr<model_gathering>;
using gathering_step = void (*)(trainer_actor*, gathering);

/// Asks `to` for their parameters (get_params_atom) or optimizer state
/// (get_state_atom), keeps the replies in g->*into and goes on with `next`.
template <class Atom>
void ask(trainer_actor* self, std::vector<caf::actor> to, Atom what, gathering g,
         std::vector<runtime::named_tensors> model_gathering::*into, gathering_step next) {
  gather<runtime::named_tensors>(
      self, std::move(to),
      [self, g, into, next](std::vector<runtime::named_tensors> replies) {
        (*g).*into = std::move(replies);
        next(self, g);
      },
      what);
}

/// Builds the model_state with `assemble` and hands it on; an exception fails
/// the trainer, its message prefixed by what was being gathered.
template <class F>
void deliver(trainer_actor* self, const gathering& g, F assemble) {
  model_state m;
  try {
    assemble(m);
  } catch (const std::exception& e) {
    const bool ps = !self->state.cfg.ps_shards.empty();
    fail(self, std::string{g->with_state ? "checkpoint: "
                           : ps          ? "gathering the parameter servers' parameters: "
                                         : "gathering the parameters: "} +
                   e.what());
    return;
  }
  g->done(std::move(m));
}

/// The last step: everything came from replica 0's layer shards.
void assemble_from_shards(trainer_actor* self, gathering g) {
  deliver(self, g, [&](model_state& m) {
    m.params = whole_tensors(self->state, g->params);
    if (!g->with_state)
      return;
    m.state = whole_tensors(self->state, g->state);
    if (!g->state.empty())
      if (auto v = meta_value(g->state[0], "steps"); !v.empty())
        m.steps = v;
  });
}

/// The last step with parameter servers: their pieces put together.
void assemble_from_ps(trainer_actor* self, gathering g) {
  deliver(self, g, [&](model_state& m) {
    const auto& layout = self->state.cfg.topology.ps_layout;
    m.params = merge({merge_pieces(layout, g->params, g->shapes)});
    if (!g->with_state)
      return;
    m.state = merge({merge_pieces(layout, g->state, g->shapes)});
    // Every stage of every shard has taken as many optimizer steps (one per
    // step in sync mode, one per push otherwise).
    m.steps = std::to_string(common_steps(g->state));
  });
}

void ps_params_gathered(trainer_actor* self, gathering g) {
  if (g->with_state)
    ask(self, self->state.cfg.ps_shards, actors::get_state_atom::value, g, &model_gathering::state,
        assemble_from_ps);
  else
    assemble_from_ps(self, g);
}

/// Replica 0's shards sent their parameters: with parameter servers they
/// only tell the shapes, and the ps shards are asked next.
void shard_params_gathered(trainer_actor* self, gathering g) {
  auto& st = self->state;
  if (!st.cfg.ps_shards.empty()) {
    for (const auto& part : g->params)
      for (std::size_t i = 0; i < part.names.size(); ++i)
        g->shapes[part.names[i]] = part.tensors[i].shape();
    ask(self, st.cfg.ps_shards, actors::get_params_atom::value, g, &model_gathering::params,
        ps_params_gathered);
  } else if (g->with_state) {
    ask(self, first_replica(st), actors::get_state_atom::value, g, &model_gathering::state,
        assemble_from_shards);
  } else {
    assemble_from_shards(self, g);
  }
}

} // namespace

void collect_model(trainer_actor* self, bool with_state, std::function<void(model_state)> done) {
  auto g = std::make_shared<model_gathering>();
  g->with_state = with_state;
  g->done = std::move(done);
  ask(self, first_replica(self->state), actors::get_params_atom::value, g, &model_gathering::params,
      shard_params_gathered);
}

/// The value of metadata `key` in `t`, or empty.
std::string meta_value(const runtime::named_tensors& t, const std::string& key) {
  for (std::size_t i = 0; i < t.meta_keys.size() && i < t.meta_values.size(); ++i)
    if (t.meta_keys[i] == key)
      return t.meta_values[i];
  return {};
}

/// Replica 0's parameters (or optimizer state) as whole tensors, in stage
/// order: each stage's tensor-parallel slices merged (models::tp_merge).
runtime::named_tensor_list whole_tensors(const trainer_state& st,
                                         const std::vector<runtime::named_tensors>& replies) {
  const auto& g = st.grid;
  if (g.tp == 1)
    return merge(replies);
  runtime::named_tensor_list r;
  for (int k = 0; k < g.depth; ++k) {
    std::vector<models::named_tensors> parts;
    for (int t = 0; t < g.tp; ++t)
      parts.push_back(merge({replies.at(g.index({0, k, t}))}));
    for (auto& nt : models::tp_merge(st.tp_layout, parts))
      r.push_back(std::move(nt));
  }
  return r;
}

std::int64_t common_steps(const std::vector<runtime::named_tensors>& parts) {
  std::optional<std::string> steps;
  for (const auto& p : parts) {
    auto v = meta_value(p, "steps");
    if (v.empty() || (steps && *steps != v))
      throw std::runtime_error("the state owners hold different steps (" +
                               (steps ? *steps : std::string{"?"}) + " and " +
                               (v.empty() ? std::string{"none"} : v) + ")");
    steps = v;
  }
  if (!steps)
    throw std::runtime_error("no state to gather");
  return std::stoll(*steps);
}

runtime::named_tensor_list merge(const std::vector<runtime::named_tensors>& parts) {
  runtime::named_tensor_list r;
  for (const auto& p : parts)
    for (std::size_t i = 0; i < p.names.size(); ++i)
      r.emplace_back(p.names[i], p.tensors[i]);
  return r;
}

runtime::named_tensors to_named(const runtime::named_tensor_list& list) {
  runtime::named_tensors r;
  for (const auto& [n, t] : list) {
    r.names.push_back(n);
    r.tensors.push_back(t);
  }
  return r;
}

} // namespace troupe::actors::training
