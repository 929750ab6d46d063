#include "actors/ps/ps_push_pull.hpp"

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "runtime/error.hpp"
#include "runtime/net/transport/courier.hpp"

namespace troupe::actors::ps_detail {

namespace {

using runtime::input_error;
using actors::ps_msg;

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
  m.kind = actors::ps_params;
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

} // namespace

/// A push (ps_shard.hpp); throws input_error naming what is wrong with it.
void on_push(ps_actor* self, ps_msg& m) {
  auto& st = self->state;
  const auto W = st.cfg.workers;
  auto from = [&] {
    return "push of step " + std::to_string(m.step) + " from worker " + std::to_string(m.worker) +
           " for stage " + std::to_string(m.stage);
  };
  if (m.kind != actors::ps_push)
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

} // namespace troupe::actors::ps_detail
