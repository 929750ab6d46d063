#include "actors/ps/ps_shard.hpp"

#include <algorithm>
#include <cstring>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "actors/ps/ps_checkpoint.hpp"
#include "actors/ps/ps_push_pull.hpp"
#include "actors/ps/ps_shard_state.hpp"
#include "models/train/optimizer.hpp"
#include "runtime/error.hpp"
#include "actors/protocol/messages.hpp"

namespace troupe::actors {

namespace ps_detail {

std::string label(const ps_shard_config& c) {
  return "ps_shard " + std::to_string(c.shard);
}

caf::error fail(ps_actor* self, const std::string& what) {
  auto err = caf::make_error(caf::sec::runtime_error, label(self->state.cfg) + ": " + what);
  self->state.stages.clear(); // nothing waits for them any more
  self->quit(err);
  return err;
}

} // namespace ps_detail

namespace {

using namespace ps_detail;
using runtime::input_error;
using actors::ps_msg;
using runtime::tensor;

constexpr int max_workers = 65536;

/// What spawn_ps_shard builds before the actor starts.
struct prepared {
  ps_shard_config cfg;
  std::vector<stage_data> stages;
};

/// The shard's counters; its version is the lowest of its stages'.
actors::ps_stats current_stats(const ps_state& st) {
  auto s = st.stats;
  s.version = 0;
  bool first = true;
  for (const auto& x : st.stages) {
    s.version = first ? x.version : std::min(s.version, x.version);
    first = false;
  }
  return s;
}

/// Runs `load` (set_params / set_state) if no push came yet: `what` can only
/// be set before training.
template <class F>
caf::result<bool> before_training(ps_actor* self, const char* what, F load) {
  auto& st = self->state;
  if (st.started)
    return caf::make_error(caf::sec::runtime_error,
                           label(st.cfg) + ": " + what + " can only be set before training");
  try {
    load();
  } catch (const std::exception& e) {
    return caf::make_error(caf::sec::invalid_argument, label(st.cfg) + ": " + e.what());
  }
  return true;
}

caf::behavior ps_shard_actor(ps_actor* self, std::shared_ptr<prepared> init) {
  auto& st = self->state;
  st.cfg = std::move(init->cfg);
  st.stages = std::move(init->stages);
  init.reset();
  st.stats.shard = st.cfg.shard;
  if (st.cfg.trace)
    st.trace = runtime::trace_recorder{ps_trace_tid(st.cfg.shard)};
  // Runs `f`, failing the shard with whatever it throws.
  auto guarded = [self](auto&& f) {
    try {
      f();
    } catch (const std::exception& e) {
      fail(self, e.what());
    }
  };
  return {
      [self, guarded](ps_msg& m) { guarded([&] { on_push(self, m); }); },
      [self, guarded](actors::ps_pull_atom, std::int32_t stage, std::int32_t worker,
                      std::int64_t step, caf::actor reply_to) {
        guarded([&] { on_pull(self, stage, worker, step, std::move(reply_to)); });
      },
      [self](actors::ps_stats_atom) { return current_stats(self->state); },
      [self](actors::get_params_atom) { return get_params(self); },
      [self](actors::get_state_atom) { return get_state(self); },
      [self](actors::set_params_atom, runtime::named_tensors& in) {
        return before_training(self, "parameters", [&] { set_params(self, in); });
      },
      [self](actors::set_state_atom, runtime::named_tensors& in) {
        return before_training(self, "optimizer state", [&] { set_state(self, in); });
      },
      [self](actors::get_trace_atom) { return self->state.trace.to_json().dump(); },
  };
}

void check_config(const ps_shard_config& c) {
  auto fail = [&](const std::string& what) { throw input_error(label(c) + ": " + what); };
  validate(c.assignment);
  if (c.shard < 0 || c.shard >= c.assignment.shards)
    fail("shard index out of range (" + std::to_string(c.assignment.shards) + " shards)");
  if (c.workers < 1 || c.workers > max_workers)
    fail(std::to_string(c.workers) + " workers");
  if (c.staleness < 0)
    fail("negative staleness " + std::to_string(c.staleness));
  if (c.first_step < 0)
    fail("negative first step " + std::to_string(c.first_step));
  if (c.fault_step < -1)
    fail("fault step " + std::to_string(c.fault_step));
}

/// This shard's stages with their pieces initialised as the model's init.
std::vector<stage_data> build_stages(const ps_shard_config& c) {
  std::vector<stage_data> stages;
  const auto mine = c.assignment.stages_of(c.shard);
  if (mine.empty())
    return stages;
  // The whole model's initial parameters (the init depends only on the seed
  // and the parameter names); only this shard's slices are kept.
  std::vector<std::unique_ptr<models::layer>> layers;
  try {
    layers = models::instantiate(c.model, 0, c.model.layers.size(), c.seed);
  } catch (const std::invalid_argument& e) {
    throw input_error(label(c) + ": model: " + e.what());
  }
  std::map<std::string, const models::parameter*> by_name;
  for (auto& l : layers)
    for (auto& p : l->parameters())
      by_name.emplace(p.name, &p);
  for (const auto& info : c.assignment.params) {
    auto it = by_name.find(info.name);
    if (it == by_name.end())
      throw input_error(label(c) + ": the ps assignment places parameter '" + info.name +
                        "', which model '" + c.model.name + "' does not have");
    if (it->second->value.numel() != info.numel)
      throw input_error(label(c) + ": the ps assignment gives parameter '" + info.name + "' " +
                        std::to_string(info.numel) + " elements, the model " +
                        std::to_string(it->second->value.numel()));
  }
  const std::int64_t version_per_step = c.mode == ps_mode::sync ? 1 : c.workers;
  for (auto k : mine) {
    stage_data s;
    s.stage = k;
    auto pieces = c.assignment.pieces_of(c.shard, k);
    s.layout.assign(pieces.begin(), pieces.end());
    s.params.reserve(s.layout.size());
    for (const auto& piece : s.layout) {
      const auto* src = by_name.at(piece.param);
      models::parameter p;
      p.name = piece.name();
      p.decay = src->decay;
      p.value = tensor::empty(runtime::dtype::f32, {piece.length});
      if (piece.length > 0)
        std::memcpy(p.value.mutable_data<float>(), src->value.data<float>() + piece.offset,
                    static_cast<std::size_t>(piece.length) * sizeof(float));
      s.numel += piece.length;
      s.params.push_back(std::move(p));
    }
    for (auto& p : s.params)
      s.ptrs.push_back(&p);
    try {
      s.opt = models::make_optimizer(c.optimizer);
    } catch (const std::invalid_argument& e) {
      throw input_error(label(c) + ": optimizer: " + e.what());
    }
    s.version = c.first_step * version_per_step;
    s.clock.assign(static_cast<std::size_t>(c.workers), c.first_step);
    stages.push_back(std::move(s));
  }
  return stages;
}

} // namespace

std::int64_t ps_trace_tid(int shard) {
  return 1'000'000 + shard;
}

nlohmann::json to_json(const ps_shard_config& c) {
  return {{"shard", c.shard},
          {"assignment", to_json(c.assignment)},
          {"workers", c.workers},
          {"mode", std::string{to_string(c.mode)}},
          {"staleness", c.staleness},
          {"optimizer", c.optimizer},
          {"model", c.model.to_json()},
          {"seed", c.seed},
          {"first_step", c.first_step},
          {"fault_step", c.fault_step},
          {"trace", c.trace}};
}

ps_shard_config ps_shard_config_from_json(const nlohmann::json& j) {
  try {
    ps_shard_config c;
    c.shard = j.at("shard").get<int>();
    c.assignment = ps_assignment_from_json(j.at("assignment"));
    c.workers = j.at("workers").get<int>();
    c.mode = parse_ps_mode(j.value("mode", std::string{"sync"}));
    c.staleness = j.value("staleness", 0);
    c.optimizer = j.at("optimizer");
    c.model = models::model_spec::from_json(j.at("model"));
    c.seed = j.value("seed", std::uint64_t{0});
    c.first_step = j.value("first_step", std::int64_t{0});
    c.fault_step = j.value("fault_step", std::int64_t{-1});
    c.trace = j.value("trace", false);
    check_config(c);
    return c;
  } catch (const nlohmann::json::exception& e) {
    throw input_error(std::string{"ps_shard config: "} + e.what());
  } catch (const std::invalid_argument& e) {
    throw input_error(std::string{"ps_shard config: "} + e.what());
  }
}

caf::actor spawn_ps_shard(caf::actor_system& sys, ps_shard_config cfg) {
  check_config(cfg);
  auto init = std::make_shared<prepared>();
  init->stages = build_stages(cfg);
  init->cfg = std::move(cfg);
  return sys.spawn(ps_shard_actor, std::move(init));
}

} // namespace troupe::actors
