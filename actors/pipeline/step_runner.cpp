#include "actors/pipeline/step_runner.hpp"

#include <algorithm>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>

#include <caf/send.hpp>

#include "actors/pipeline/device_actor.hpp"
#include "actors/pipeline/update_work.hpp"
#include "models/train/loss.hpp"
#include "models/train/mse_loss.hpp"
#include "models/train/sequence_loss.hpp"
#include "runtime/copy_meter.hpp"
#include "runtime/net/transport/courier.hpp"

namespace troupe::actors {

using runtime::tensor;
using steady_clock = std::chrono::steady_clock;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/// shard_config::slow_factor: the kernels since `t0` took `factor` times as
/// long, on a slower device; called before the result is sent, so that its
/// consumer sees the delay too.
void slow_down(double factor, std::chrono::steady_clock::time_point t0) {
  if (factor > 1.0)
    std::this_thread::sleep_for((factor - 1.0) * (std::chrono::steady_clock::now() - t0));
}

/// Adds one action's (or tail work's) figures to the run's.
void add_up(task_done& total, const task_done& d, double seconds, std::uint64_t saved_bytes) {
  total.loss_sum += d.loss_sum;
  total.correct += d.correct;
  total.samples += d.samples;
  total.messages_sent += d.messages_sent;
  total.bytes_sent += d.bytes_sent;
  total.tokens += d.tokens;
  total.abs_error_sum += d.abs_error_sum;
  total.seconds += seconds;
  if (d.grad_sumsq)
    total.grad_sumsq = d.grad_sumsq;
  if (d.digest)
    total.digest = d.digest;
  total.forward_samples += d.forward_samples;
  total.outputs.insert(total.outputs.end(), d.outputs.begin(), d.outputs.end());
  total.output_offsets.insert(total.output_offsets.end(), d.output_offsets.begin(),
                              d.output_offsets.end());
  total.peak_in_flight = std::max(total.peak_in_flight, d.peak_in_flight);
  total.peak_saved_bytes = std::max<std::uint64_t>(total.peak_saved_bytes, saved_bytes);
  total.buckets += d.buckets;
  total.allreduce_bytes += d.allreduce_bytes;
  total.updates_in_reduction += d.updates_in_reduction;
  if (d.allreduce_seconds)
    total.allreduce_seconds = d.allreduce_seconds;
}

/// What the shard is told when device work threw: an aborted shared
/// reduction fails only the step (a replica ended), anything else the shard.
task_failed failure(const std::exception& e) {
  return {e.what(), dynamic_cast<const reduction_aborted*>(&e) != nullptr};
}

} // namespace

std::shared_ptr<step_run> make_step_run(const compute_state& c, const actors::step_msg& m,
                                        std::vector<action> actions, caf::actor shard,
                                        caf::actor prev, caf::actor next) {
  auto r = std::make_shared<step_run>();
  r->step = m;
  r->final_backward.assign(c.chunks.size(), -1);
  const auto completes =
      splits_backward(c.cfg.schedule) ? action::kind::weight : action::kind::backward;
  for (std::size_t i = 0; i < actions.size(); ++i)
    if (actions[i].what == completes)
      r->final_backward[static_cast<std::size_t>(actions[i].chunk)] = static_cast<std::int64_t>(i);
  r->actions = std::move(actions);
  r->shard = std::move(shard);
  r->prev = std::move(prev);
  r->next = std::move(next);
  // One over the step's predictions: samples, or samples x context for a
  // language model (models/train/sequence_loss.hpp).
  const std::int64_t per_sample = c.sequence_loss ? c.cfg.model.input_shape.at(0) : 1;
  r->grad_scale = 1.0f / static_cast<float>(m.global_batch * per_sample);
  return r;
}

/// Inbox lock held: whether action `a` of `step` can run.
bool inputs_ready(const compute_state& c, std::int64_t step, const action& a) {
  const input_key k{step, a.mb, a.chunk};
  if (a.what == action::kind::forward)
    return c.in.activations.count(k) > 0 && (!c.cfg.owns_loss(a.chunk) || c.in.labels.count(k) > 0);
  if (a.what == action::kind::weight)
    return true; // its backward ran earlier on this device
  return c.cfg.owns_loss(a.chunk) || c.in.grads.count(k) > 0;
}

std::shared_ptr<step_run> take_resumable(compute_state& c) {
  auto r = c.in.parked_run.lock();
  if (!r || !inputs_ready(c, r->step.step, c.in.waiting_for))
    return nullptr;
  c.in.parked_run.reset();
  return r;
}

void resume_device(const std::shared_ptr<compute_state>& c, std::shared_ptr<step_run> r,
                   handoff_stamp sent) {
  caf::actor device;
  {
    std::lock_guard lock{c->in.mutex};
    device = c->in.device;
  }
  caf::anon_send(device, device_task{[c, r = std::move(r), sent]() {
                   sent.done(c->trace);
                   run_actions(c, r);
                 }});
}

namespace {

/// When a direct delivery arrived (tracing only, as the shard stamps messages).
steady_clock::time_point direct_arrival(const compute_state& to) {
  return to.cfg.trace ? steady_clock::now() : steady_clock::time_point{};
}

/// A neighbour's output stored into `to`'s inbox without its shard; returns
/// the run it completes, if `to`'s device parked for it.
std::shared_ptr<step_run> store_direct(compute_state& to, actors::activation_msg m) {
  const input_key k{m.step, m.mb, m.chunk};
  return store_arrived(to, &inbox::activations, k,
                       arrived<actors::activation_msg>{std::move(m), direct_arrival(to), true});
}

std::shared_ptr<step_run> store_direct(compute_state& to, actors::gradient_msg m) {
  return store_arrived(to, &inbox::grads, input_key{m.step, m.mb, m.chunk},
                       arrived<tensor>{std::move(m.data), direct_arrival(to), true});
}

template <class Msg>
void store_and_resume(const std::shared_ptr<compute_state>& to, Msg m) {
  auto resume = store_direct(*to, std::move(m));
  if (!resume)
    return;
  handoff_stamp sent;
  if (to->cfg.trace)
    sent = {steady_clock::now(), resume->step.step};
  resume_device(to, std::move(resume), sent);
}

} // namespace

void deliver_local(const std::shared_ptr<compute_state>& to, actors::activation_msg m) {
  store_and_resume(to, std::move(m));
}

void deliver_local(const std::shared_ptr<compute_state>& to, actors::gradient_msg m) {
  store_and_resume(to, std::move(m));
}

namespace {

/// An output to a neighbour: into its inbox when it is in this process, else
/// as a message through the courier (its shard stores it).
template <class Msg>
void send_on(compute_state& c, const std::weak_ptr<compute_state>& local, const caf::actor& dest,
             Msg m) {
  if (auto to = local.lock())
    deliver_local(to, std::move(m));
  else
    runtime::transport::deliver(c.cfg.courier, dest, std::move(m));
}

/// What an action takes out of the inbox, and when the last of it arrived.
struct action_inputs {
  actors::activation_msg activation;
  tensor labels;
  tensor grad;
  steady_clock::time_point arrived;
  const char* last = ""; ///< the input that arrived last (the one a wait was for)
};

/// An input a neighbour's device stored directly: its arrival goes into this
/// device's trace as the shard records the others (shard_trace::input).
template <class T>
void note_direct(compute_state& c, const arrived<T>& in, const char* what, const action& a,
                 std::int64_t step) {
  if (in.direct && c.trace.enabled())
    c.trace.instant(what, "input", in.at, {{"step", step}, {"mb", a.mb}, {"chunk", a.chunk}});
}

/// Inbox lock held, inputs_ready(): moves action `a`'s inputs out.
action_inputs take_inputs(compute_state& c, std::int64_t step, const action& a) {
  const input_key k{step, a.mb, a.chunk};
  action_inputs r;
  if (a.what == action::kind::forward) {
    auto in = c.in.activations.extract(k);
    note_direct(c, in.mapped(), "activation", a, step);
    r.activation = std::move(in.mapped().value);
    r.arrived = in.mapped().at;
    r.last = "activation";
    if (c.cfg.owns_loss(a.chunk)) {
      auto l = c.in.labels.extract(k);
      r.labels = std::move(l.mapped().value);
      if (l.mapped().at > r.arrived) {
        r.arrived = l.mapped().at;
        r.last = "labels";
      }
    }
  } else if (a.what == action::kind::backward && !c.cfg.owns_loss(a.chunk)) {
    auto g = c.in.grads.extract(k);
    note_direct(c, g.mapped(), "gradient", a, step);
    r.grad = std::move(g.mapped().value);
    r.arrived = g.mapped().at;
    r.last = "gradient";
  }
  return r;
}

/// Sends an output to the shard holding stage `stage` of this pipeline: a
/// neighbour (straight into its inbox when it is in this process), or in
/// the V layout this shard itself (the last stage's chunk 0 feeds its own
/// chunk 1): into its own inbox, with no hop at all (this device is
/// running, so it has not parked for it).
template <class Msg>
void send_to(compute_state& c, const step_run& r, int stage, Msg m) {
  if (stage == c.cfg.stage) {
    if (store_direct(c, std::move(m)))
      throw std::logic_error("a device parked while it runs");
    return;
  }
  // stage + 1, or stage 0 from the last stage (the ring's wrap, looped chunks).
  const bool next = stage == c.cfg.stage + 1 || (stage == 0 && stage != c.cfg.stage - 1);
  send_on(c, next ? r.next_local : r.prev_local, next ? r.next : r.prev, std::move(m));
}

task_done run_forward(compute_state& c, step_run& r, const action& a, action_inputs& in) {
  const auto& m = r.step;
  models::forward_context ctx;
  ctx.mb = a.mb;
  ctx.step = m.step;
  ctx.sample_offset = in.activation.sample_offset;
  ctx.training = m.training;
  ctx.seed = c.cfg.seed;
  if (m.training)
    r.total.peak_in_flight = std::max(r.total.peak_in_flight, ++r.in_flight);
  if (m.training && m.step == c.cfg.fault_step)
    throw std::runtime_error("injected fault in the forward of step " + std::to_string(m.step));
  task_done d;
  if (m.training && a.chunk == 0)
    d.forward_samples = in.activation.data.dim(0);
  const auto t0 = steady_clock::now();
  auto y = c.chunks[static_cast<std::size_t>(a.chunk)].forward(in.activation.data, ctx);
  slow_down(c.cfg.slow_factor, t0);
  if (c.cfg.owns_loss(a.chunk)) {
    // Real-valued targets (f32, the loader's for --loss mse) take the
    // regression loss; integer labels the cross-entropy.
    auto out = c.sequence_loss
                   ? models::sequence_cross_entropy(y, in.labels, r.grad_scale, ctx.training)
               : in.labels.type() == runtime::dtype::f32
                   ? models::mean_squared_error(y, in.labels, r.grad_scale, ctx.training)
                   : models::softmax_cross_entropy(y, in.labels, r.grad_scale, ctx.training);
    d.loss_sum = out.loss_sum;
    d.abs_error_sum = out.abs_error_sum;
    d.correct = out.correct;
    d.samples = y.dim(0);
    d.tokens = c.sequence_loss ? y.dim(0) * y.dim(1) : y.dim(0);
    if (ctx.training)
      c.dlogits[ctx.mb] = std::move(out.dlogits);
    if (m.outputs && !ctx.training) {
      d.outputs.push_back(std::move(y));
      d.output_offsets.push_back(ctx.sample_offset);
    }
  } else {
    d.messages_sent = 1;
    d.bytes_sent = y.nbytes();
    const auto to = c.cfg.next_of(a.chunk);
    send_to(c, r, to.stage,
            actors::activation_msg{ctx.step, ctx.mb, ctx.sample_offset, ctx.training, std::move(y),
                                   to.chunk});
  }
  return d;
}

/// The step's last backward (or weight action) through a chunk completes its
/// gradients layer by layer: with data parallelism each finished bucket
/// starts its all-reduce at once; where folds_optimizer(), each finished
/// layer gets its optimizer update.
std::function<void(std::size_t)> completing(compute_state& c, step_run& r, const action& a,
                                            bool final) {
  if (!final)
    return {};
  const auto chunk = static_cast<std::size_t>(a.chunk);
  if (r.step.training && c.opt && folds_optimizer(c.cfg))
    return [&c, chunk, lr = r.step.lr](std::size_t layer) { update_layer(c, chunk, layer, lr); };
  if (!c.cfg.all_reduces())
    return {};
  return [&c, &r, chunk](std::size_t layer) {
    c.buckets.launch(r.shard, r.step.step, r.step.lr, chunk, layer, c.trace);
  };
}

/// Where the step's update is folded into its last backward and the
/// optimizer is plain SGD, that backward's learning rate: dense layers then
/// update their weights inside the weight-gradient GEMMs
/// (sequential::backward).
std::optional<float> sgd_in_backward(const compute_state& c, const step_run& r, bool final) {
  if (final && r.step.training && c.opt && folds_optimizer(c.cfg) && c.opt->is_plain_sgd())
    return r.step.lr;
  return std::nullopt;
}

/// A split schedule's weight action: the parameter gradients of the
/// micro-batch whose backward (input gradients) ran earlier.
task_done run_weight(compute_state& c, step_run& r, const action& a, bool final) {
  --r.in_flight;
  const auto t0 = steady_clock::now();
  c.chunks[static_cast<std::size_t>(a.chunk)].backward_weight(a.mb, completing(c, r, a, final));
  slow_down(c.cfg.slow_factor, t0);
  return {};
}

task_done run_backward(compute_state& c, step_run& r, const action& a, bool final, tensor dy) {
  const bool split = splits_backward(c.cfg.schedule);
  if (!split)
    --r.in_flight;
  const auto chunk = static_cast<std::size_t>(a.chunk);
  if (!dy.defined()) {
    auto it = c.dlogits.find(a.mb);
    if (it == c.dlogits.end())
      throw std::logic_error("backward of micro-batch " + std::to_string(a.mb) +
                             " without its loss");
    dy = std::move(it->second);
    c.dlogits.erase(it);
  }
  const bool first = c.cfg.takes_input(a.chunk);
  const auto t0 = steady_clock::now();
  auto dx = split ? c.chunks[chunk].backward_input(dy, a.mb, !first)
                  : c.chunks[chunk].backward(dy, a.mb, !first, completing(c, r, a, final),
                                             sgd_in_backward(c, r, final));
  slow_down(c.cfg.slow_factor, t0);
  task_done d;
  if (!first) {
    d.messages_sent = 1;
    d.bytes_sent = dx.nbytes();
    const auto to = c.cfg.prev_of(a.chunk);
    send_to(c, r, to.stage, actors::gradient_msg{r.step.step, a.mb, std::move(dx), to.chunk});
  }
  return d;
}

} // namespace

// Parking rather than spinning: a bounded spin before parking was tried; it
// caught few inputs, waits being a neighbour's kernels, and on the busy
// 2-core machine a spinning thread lost its wake-up preemption and started
// late by whole scheduler slices (docs/benchmarks.md).
void run_actions(const std::shared_ptr<compute_state>& cp, const std::shared_ptr<step_run>& rp) {
  auto& c = *cp;
  auto& r = *rp;
  try {
    for (;;) {
      std::unique_lock lock{c.in.mutex};
      if (r.pc == r.actions.size())
        break;
      const action a = r.actions[r.pc];
      if (!inputs_ready(c, r.step.step, a)) {
        if (!r.idle_since)
          r.idle_since = steady_clock::now();
        c.in.parked_run = rp;
        c.in.waiting_for = a;
        return; // the shard resumes the run once a's inputs are here
      }
      auto in = take_inputs(c, r.step.step, a);
      const auto index = static_cast<std::int64_t>(r.pc++);
      lock.unlock();
      if (r.idle_since && c.trace.enabled()) // the wait ended when the last input arrived
        c.trace.complete("wait", "wait", *r.idle_since, std::max(*r.idle_since, in.arrived),
                         {{"step", r.step.step}, {"input", in.last}, {"mb", a.mb}});
      r.idle_since.reset();
      const bool forward = a.what == action::kind::forward;
      const bool final =
          !forward && r.final_backward.at(static_cast<std::size_t>(a.chunk)) == index;
      runtime::copy_meter copies;
      std::optional<runtime::copy_meter_scope> metered;
      if (c.trace.enabled())
        metered.emplace(&copies);
      const auto t0 = steady_clock::now();
      auto d = forward                            ? run_forward(c, r, a, in)
               : a.what == action::kind::backward ? run_backward(c, r, a, final, std::move(in.grad))
                                                  : run_weight(c, r, a, final);
      const auto t1 = steady_clock::now();
      metered.reset();
      c.trace.complete(
          forward                            ? "forward"
          : a.what == action::kind::backward ? "backward"
                                             : "weight",
          r.step.training ? "compute" : "eval", t0, t1,
          {{"step", r.step.step}, {"mb", a.mb}, {"chunk", a.chunk}, {"copy_ns", copies.ns}});
      add_up(r.total, d, std::chrono::duration<double>(t1 - t0).count(), c.saved_bytes());
    }
    for (auto& work : r.tail) {
      const auto t0 = steady_clock::now();
      auto d = work();
      add_up(r.total, d, seconds_since(t0), c.saved_bytes());
    }
    r.tail.clear();
    if (c.trace.enabled())
      r.total.sent_at = steady_clock::now();
    caf::anon_send(r.shard, r.total);
  } catch (const std::exception& e) {
    caf::anon_send(r.shard, failure(e));
  }
}

void run_chain(compute_state& c, std::vector<device_work>& chain, const caf::actor& shard) {
  auto t0 = steady_clock::now();
  try {
    task_done total;
    for (auto& work : chain)
      add_up(total, work(), 0.0, c.saved_bytes());
    total.seconds = seconds_since(t0);
    if (c.trace.enabled())
      total.sent_at = steady_clock::now();
    caf::anon_send(shard, std::move(total));
  } catch (const std::exception& e) {
    caf::anon_send(shard, failure(e));
  }
}

} // namespace troupe::actors
