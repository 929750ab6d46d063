#include "actors/ps/ps_shard.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>

#include "models/train/optimizer.hpp"
#include "runtime/error.hpp"
#include "runtime/net/messages.hpp"
#include "runtime/net/transport/courier.hpp"
#include "runtime/telemetry/trace_recorder.hpp"

namespace troupe::actors {

namespace {

using runtime::input_error;
using runtime::ps_msg;
using runtime::tensor;
using steady = std::chrono::steady_clock;

constexpr int max_workers = 65536;

/// A worker's pull that waits for its condition (ps_shard.hpp).
struct pull_request {
  std::int32_t worker = 0;
  std::int64_t step = 0;
  caf::actor reply_to;
  steady::time_point arrived;
};

/// The pushes of one step of one stage (sync mode), by worker.
struct pending_step {
  std::vector<tensor> grads;
  int have = 0;
  float lr = 0;
  float scale = 1;
};

/// One stage's pieces on this shard with their optimizer.
struct stage_data {
  std::int32_t stage = 0;
  std::vector<ps_piece> layout; ///< flat order
  /// One parameter per piece, named ps_piece::name(), values flat [length].
  std::vector<models::parameter> params;
  std::vector<models::parameter*> ptrs;
  std::unique_ptr<models::optimizer> opt;
  std::int64_t numel = 0;
  std::int64_t version = 0;
  /// The values at `version` as one flat tensor, shared by every reply until
  /// the next update (undefined: build it on the next pull).
  tensor snapshot;
  /// Per worker, the next step it pushes (= steps pushed, from step 0 on).
  std::vector<std::int64_t> clock;
  std::map<std::int64_t, pending_step> pending; ///< sync
  std::vector<pull_request> pulls;              ///< waiting, in arrival order
};

/// What spawn_ps_shard builds before the actor starts.
struct prepared {
  ps_shard_config cfg;
  std::vector<stage_data> stages;
};

struct ps_state {
  ps_shard_config cfg;
  std::vector<stage_data> stages; ///< ascending stage
  runtime::ps_stats stats;
  runtime::trace_recorder trace;
  bool started = false; ///< a push came (set_params / set_state refused after)
  static inline const char* name = "ps_shard";
};

using ps_actor = caf::stateful_actor<ps_state>;

std::string label(const ps_shard_config& c) {
  return "ps_shard " + std::to_string(c.shard);
}

/// Ends the shard with an error naming what was wrong.
caf::error fail(ps_actor* self, const std::string& what) {
  auto err = caf::make_error(caf::sec::runtime_error, label(self->state.cfg) + ": " + what);
  self->state.stages.clear(); // nothing waits for them any more
  self->quit(err);
  return err;
}

stage_data* find_stage(ps_actor* self, std::int32_t stage) {
  for (auto& s : self->state.stages)
    if (s.stage == stage)
      return &s;
  return nullptr;
}

std::string stages_text(const ps_state& st) {
  std::string out;
  for (const auto& s : st.stages)
    out += (out.empty() ? "" : ", ") + std::to_string(s.stage);
  return out.empty() ? std::string{"none"} : out;
}

std::int64_t min_clock(const stage_data& s) {
  return *std::min_element(s.clock.begin(), s.clock.end());
}

/// The stage's values as one flat tensor (built once per version).
const tensor& snapshot(stage_data& s) {
  if (!s.snapshot.defined()) {
    auto flat = tensor::empty(runtime::dtype::f32, {s.numel});
    float* dst = s.numel > 0 ? flat.mutable_data<float>() : nullptr;
    for (const auto& p : s.params) {
      const auto n = p.value.numel();
      if (n > 0)
        std::memcpy(dst, p.value.data<float>(), static_cast<std::size_t>(n) * sizeof(float));
      dst += n;
    }
    s.snapshot = std::move(flat);
  }
  return s.snapshot;
}

/// A piece's gradient tensor to write: its own buffer when nobody else holds
/// it (reused from the last update), else a fresh one.
float* grad_buffer(models::parameter& p) {
  if (!p.grad.defined() || !p.grad.is_unique() || p.grad.numel() != p.value.numel())
    p.grad = tensor::empty(runtime::dtype::f32, {p.value.numel()});
  p.grad_fresh = false;
  return p.grad.mutable_data<float>();
}

void scale_in_place(float* __restrict x, std::int64_t n, float scale) {
  if (scale != 1.0f)
    for (std::int64_t i = 0; i < n; ++i)
      x[i] *= scale;
}

/// One optimizer step of stage `s` for `step` with the pieces' gradients set.
void update(ps_actor* self, stage_data& s, std::int64_t step, float lr, steady::time_point t0) {
  auto& st = self->state;
  s.opt->step(s.ptrs, lr);
  ++s.version;
  s.snapshot = tensor{};
  ++st.stats.updates;
  const auto t1 = steady::now();
  st.stats.apply_seconds += std::chrono::duration<double>(t1 - t0).count();
  st.trace.complete("update", "compute", t0, t1,
                    {{"step", step}, {"stage", s.stage}, {"version", s.version}});
}

/// Throws for the injected fault (cfg.fault_step).
void check_fault(const ps_state& st, std::int64_t step) {
  if (st.cfg.fault_step >= 0 && step == st.cfg.fault_step)
    throw std::runtime_error("injected fault at step " + std::to_string(step));
}

/// sync: all W pushes of `step` are in: their sum in worker order, times
/// scale, is one update; the version becomes step + 1.
void apply_sync(ps_actor* self, stage_data& s, std::int64_t step, pending_step& p) {
  check_fault(self->state, step);
  const auto t0 = steady::now();
  std::int64_t offset = 0;
  for (auto& param : s.params) {
    const auto n = param.value.numel();
    float* __restrict dst = grad_buffer(param);
    const float* g0 = p.grads[0].data<float>() + offset;
    if (n > 0)
      std::memcpy(dst, g0, static_cast<std::size_t>(n) * sizeof(float));
    for (std::size_t w = 1; w < p.grads.size(); ++w) {
      const float* __restrict g = p.grads[w].data<float>() + offset;
      for (std::int64_t i = 0; i < n; ++i)
        dst[i] += g[i];
    }
    scale_in_place(dst, n, p.scale);
    offset += n;
  }
  p.grads.clear(); // the workers' buffers go back to them
  update(self, s, step, p.lr, t0);
  s.version = step + 1;
}

/// async, ssp: one push is one update (its gradient times scale).
void apply_one(ps_actor* self, stage_data& s, const ps_msg& m) {
  check_fault(self->state, m.step);
  const auto t0 = steady::now();
  if (s.params.size() == 1 && m.scale == 1.0f) {
    s.params[0].grad = m.data.reshape({m.data.numel()}); // read only: no copy
    s.params[0].grad_fresh = false;
  } else {
    const float* src = m.data.data<float>();
    for (auto& param : s.params) {
      const auto n = param.value.numel();
      float* dst = grad_buffer(param);
      if (n > 0)
        std::memcpy(dst, src, static_cast<std::size_t>(n) * sizeof(float));
      scale_in_place(dst, n, m.scale);
      src += n;
    }
  }
  update(self, s, m.step, m.lr, t0);
  if (s.params.size() == 1 && m.scale == 1.0f)
    s.params[0].grad = tensor{}; // do not keep the worker's buffer
}

/// Whether `r` may be served now (ps_shard.hpp).
bool can_serve(const ps_state& st, const stage_data& s, const pull_request& r) {
  if (s.clock[static_cast<std::size_t>(r.worker)] < r.step)
    return false; // its own push of step - 1 is not in yet
  switch (st.cfg.mode) {
  case ps_mode::sync:
    return s.version >= r.step;
  case ps_mode::async:
    return true;
  case ps_mode::ssp:
    return min_clock(s) >= r.step - st.cfg.staleness;
  }
  return false;
}

void serve(ps_actor* self, stage_data& s, pull_request& r) {
  auto& st = self->state;
  const auto gap = r.step - min_clock(s);
  st.stats.max_gap = std::max(st.stats.max_gap, gap);
  ps_msg m;
  m.kind = runtime::ps_params;
  m.step = r.step;
  m.worker = r.worker;
  m.stage = s.stage;
  m.shard = st.cfg.shard;
  m.version = s.version;
  m.data = snapshot(s);
  st.stats.bytes_out += m.data.nbytes();
  ++st.stats.pulls;
  st.trace.complete_until_now("pull", "comm", r.arrived,
                              {{"step", r.step},
                               {"worker", r.worker},
                               {"stage", s.stage},
                               {"version", s.version},
                               {"gap", gap}});
  runtime::transport::deliver(st.cfg.courier, r.reply_to, std::move(m));
}

/// Serves every waiting pull of `s` whose condition holds, in arrival order.
void serve_ready(ps_actor* self, stage_data& s) {
  auto& st = self->state;
  std::vector<pull_request> still;
  auto waiting = std::move(s.pulls);
  s.pulls.clear();
  for (auto& r : waiting) {
    if (can_serve(st, s, r))
      serve(self, s, r);
    else
      still.push_back(std::move(r));
  }
  s.pulls = std::move(still);
}

/// A push (ps_shard.hpp); throws input_error naming what is wrong with it.
void on_push(ps_actor* self, ps_msg& m) {
  auto& st = self->state;
  const auto W = st.cfg.workers;
  auto from = [&] {
    return "push of step " + std::to_string(m.step) + " from worker " + std::to_string(m.worker) +
           " for stage " + std::to_string(m.stage);
  };
  if (m.kind != runtime::ps_push)
    throw input_error("ps_msg of kind " + std::to_string(m.kind) + " (expected a push)");
  if (m.shard != st.cfg.shard)
    throw input_error(from() + " is addressed to shard " + std::to_string(m.shard));
  if (m.worker < 0 || m.worker >= W)
    throw input_error(from() + ": worker out of range (" + std::to_string(W) + " workers)");
  auto* s = find_stage(self, m.stage);
  if (s == nullptr)
    throw input_error(from() + ": unknown stage (this shard holds stages " + stages_text(st) + ")");
  if (!m.data.defined() || m.data.type() != runtime::dtype::f32 || !m.data.where().is_cpu())
    throw input_error(from() + ": gradients must be an f32 host tensor, got " +
                      (m.data.defined() ? std::string{runtime::to_string(m.data.type())} + " on " +
                                              runtime::to_string(m.data.where())
                                        : std::string{"none"}));
  if (m.data.numel() != s->numel)
    throw input_error(from() + ": wrong length " + std::to_string(m.data.numel()) + ", expected " +
                      std::to_string(s->numel));
  if (!std::isfinite(m.lr) || m.lr < 0 || !std::isfinite(m.scale))
    throw input_error(from() + ": bad lr " + std::to_string(m.lr) + " or scale " +
                      std::to_string(m.scale));
  auto& clock = s->clock[static_cast<std::size_t>(m.worker)];
  if (m.step < clock)
    throw input_error("duplicate " + from() + " (its pushes are in up to step " +
                      std::to_string(clock - 1) + ")");
  if (m.step > clock)
    throw input_error(from() + " before its push of step " + std::to_string(clock) +
                      " (a worker pushes each step in order, after pulling for it)");
  st.started = true;
  ++st.stats.pushes;
  st.stats.bytes_in += m.data.nbytes();
  st.trace.instant("push", "input", steady::now(),
                   {{"step", m.step}, {"worker", m.worker}, {"stage", m.stage}});
  ++clock;
  if (st.cfg.mode == ps_mode::sync) {
    auto& p = s->pending[m.step];
    if (p.have == 0) {
      p.grads.resize(static_cast<std::size_t>(W));
      p.lr = m.lr;
      p.scale = m.scale;
    } else if (m.lr != p.lr || m.scale != p.scale) {
      throw input_error(from() + " has lr " + std::to_string(m.lr) + " and scale " +
                        std::to_string(m.scale) + ", other workers' pushes " +
                        std::to_string(p.lr) + " and " + std::to_string(p.scale));
    }
    p.grads[static_cast<std::size_t>(m.worker)] = std::move(m.data);
    if (++p.have == W) {
      auto node = s->pending.extract(m.step);
      apply_sync(self, *s, m.step, node.mapped());
    }
  } else {
    apply_one(self, *s, m);
  }
  serve_ready(self, *s);
}

void on_pull(ps_actor* self, std::int32_t stage, std::int32_t worker, std::int64_t step,
             caf::actor reply_to) {
  auto& st = self->state;
  auto what = "pull of stage " + std::to_string(stage) + " for step " + std::to_string(step) +
              " by worker " + std::to_string(worker);
  if (worker < 0 || worker >= st.cfg.workers)
    throw input_error(what + ": worker out of range (" + std::to_string(st.cfg.workers) +
                      " workers)");
  auto* s = find_stage(self, stage);
  if (s == nullptr)
    throw input_error(what + ": unknown stage (this shard holds stages " + stages_text(st) + ")");
  if (!reply_to)
    throw input_error(what + " without an actor to answer");
  const auto clock = s->clock[static_cast<std::size_t>(worker)];
  if (step < st.cfg.first_step || step > clock + 1)
    throw input_error(what + ": its pushes are in up to step " + std::to_string(clock - 1) +
                      " (a worker pulls step s after pushing step s - 1)");
  pull_request r{worker, step, std::move(reply_to), steady::now()};
  if (can_serve(st, *s, r))
    serve(self, *s, r);
  else
    s->pulls.push_back(std::move(r));
}

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
      [self, guarded](runtime::ps_pull_atom, std::int32_t stage, std::int32_t worker,
                      std::int64_t step, caf::actor reply_to) {
        guarded([&] { on_pull(self, stage, worker, step, std::move(reply_to)); });
      },
      [self](runtime::ps_stats_atom) {
        auto s = self->state.stats;
        s.version = 0;
        bool first = true;
        for (const auto& x : self->state.stages) {
          s.version = first ? x.version : std::min(s.version, x.version);
          first = false;
        }
        return s;
      },
      [self](runtime::get_params_atom) { return get_params(self); },
      [self](runtime::get_state_atom) { return get_state(self); },
      [self](runtime::set_params_atom, runtime::named_tensors& in) -> caf::result<bool> {
        auto& st = self->state;
        if (st.started)
          return caf::make_error(caf::sec::runtime_error,
                                 label(st.cfg) + ": parameters can only be set before training");
        try {
          set_params(self, in);
        } catch (const std::exception& e) {
          return caf::make_error(caf::sec::invalid_argument, label(st.cfg) + ": " + e.what());
        }
        return true;
      },
      [self](runtime::set_state_atom, runtime::named_tensors& in) -> caf::result<bool> {
        auto& st = self->state;
        if (st.started)
          return caf::make_error(caf::sec::runtime_error,
                                 label(st.cfg) +
                                     ": optimizer state can only be set before training");
        try {
          set_state(self, in);
        } catch (const std::exception& e) {
          return caf::make_error(caf::sec::invalid_argument, label(st.cfg) + ": " + e.what());
        }
        return true;
      },
      [self](runtime::get_trace_atom) { return self->state.trace.to_json().dump(); },
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
