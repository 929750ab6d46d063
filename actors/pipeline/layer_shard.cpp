#include "actors/pipeline/layer_shard.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>

#include "actors/pipeline/device_actor.hpp"
#include "actors/ps/ps_client.hpp"
#include "actors/collectives/tp_group_client.hpp"
#include "models/train/grad_clip.hpp"
#include "models/layers/init.hpp"
#include "models/train/loss.hpp"
#include "models/train/optimizer.hpp"
#include "models/train/sequence_loss.hpp"
#include "models/layers/sequential.hpp"
#include "models/tensor_parallel.hpp"
#include "runtime/error.hpp"
#include "runtime/net/messages.hpp"
#include "runtime/telemetry/trace_recorder.hpp"
#include "runtime/net/transport/courier.hpp"

namespace troupe::actors {

namespace {

using runtime::tensor;
using key = std::tuple<std::int64_t, std::int32_t, std::int32_t>; // (step, micro-batch, chunk)

/// A device task finished (sent from the device thread to the shard).
struct task_done {
  double loss_sum = 0;
  std::int64_t correct = 0;
  std::int64_t samples = 0;
  double seconds = 0;
  std::uint64_t peak_saved_bytes = 0;  ///< most saved activations seen between its actions
  std::int32_t peak_in_flight = 0;     ///< most micro-batches with saved activations
  std::uint64_t messages_sent = 0;     ///< activations and gradients sent to peers
  std::uint64_t bytes_sent = 0;        ///< their tensor payload bytes
  std::int64_t tokens = 0;             ///< predictions the loss covers
  std::optional<double> grad_sumsq;    ///< clipping: the gradients' sum of squares
  std::optional<std::uint64_t> digest; ///< --check-replicas: the parameters' digest
  std::int64_t forward_samples = 0;    ///< training samples through chunk 0 (ps scale)
};

/// A device task threw; the shard fails with this message.
struct task_failed {
  std::string what;
};

/// Data parallelism: the device thread flattened a gradient bucket whose
/// backward is complete; the shard starts its all-reduce.
struct bucket_ready {
  std::int64_t step = 0;
  std::size_t bucket = 0;
  runtime::tensor data;
};

} // namespace
} // namespace troupe::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::actors::task_done)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::actors::task_failed)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::actors::bucket_ready)

namespace troupe::actors {

namespace {

/// Data parallelism: parameters whose gradients are all-reduced together,
/// flattened in this order. Complete once the step's last backward through
/// its chunk has passed layer `ready_layer` (the lowest layer it covers).
struct grad_bucket {
  std::vector<models::parameter*> params;
  std::int64_t numel = 0;
  std::size_t chunk = 0;
  std::size_t ready_layer = 0; ///< local layer index within the chunk
};

/// An input as the shard stored it, and when it arrived (tracing: the wait
/// for it ends there).
template <class T>
struct arrived {
  T value;
  std::chrono::steady_clock::time_point at;
};

/// Inputs of the shard's steps, keyed by (step, mb, chunk). The shard stores
/// them as they arrive (on a CAF worker); the device thread takes them when
/// their action runs. Sharing them, instead of sending the device one task
/// per ready action and getting a task_done back, lets the device go straight
/// on to the next action whose inputs are here: no thread hand-off between
/// actions (each one is a futex wake-up, tens of microseconds).
struct inbox {
  std::mutex mutex; ///< guards everything below
  std::map<key, arrived<runtime::activation_msg>> activations;
  std::map<key, arrived<tensor>> grads;
  std::map<key, arrived<tensor>> labels;
  /// The device found `waiting_for` not ready and went back to its mailbox;
  /// the shard resumes it (one device_task) once those inputs are here.
  bool parked = false;
  action waiting_for;
};

/// Model and optimizer of a shard. Only the device thread touches it while a
/// task runs; the shard touches it only when no task is running (the task's
/// completion message orders the two). The inbox is the exception: both
/// threads use it, under its mutex.
struct compute_state {
  shard_config cfg;           ///< a copy, for the device thread (never changed)
  bool sequence_loss = false; ///< a language model: per-token loss
  inbox in;
  std::vector<models::sequential> chunks; ///< one per shard_config::chunks entry
  std::vector<grad_bucket> buckets;       ///< data parallelism only
  /// buckets_at[chunk][layer]: the buckets that layer completes.
  std::vector<std::vector<std::vector<std::size_t>>> buckets_at;
  std::vector<bool> launched;             ///< per bucket, in the current step
  std::unique_ptr<models::optimizer> opt; ///< over the parameters of every chunk
  /// Tensor parallelism: the group the split layers all-reduce through, and
  /// the parameters every rank holds whole (only rank 0 counts them in the
  /// global gradient norm).
  std::shared_ptr<tp_group_client> tp;
  std::set<std::string> replicated;
  std::map<std::int32_t, tensor> dlogits; ///< loss stage: gradient saved by forward
  runtime::trace_recorder trace; ///< device-thread events; the shard absorbs them on task_done

  std::vector<models::parameter*> parameters() {
    std::vector<models::parameter*> r;
    for (auto& c : chunks)
      for (auto* p : c.parameters())
        r.push_back(p);
    return r;
  }
  /// This shard's part of the global gradient norm: its parameters, less the
  /// replicated ones on tensor-parallel ranks other than 0.
  double grad_sum_of_squares() {
    auto params = parameters();
    if (cfg.tp_rank > 0)
      std::erase_if(params, [&](const models::parameter* p) { return replicated.count(p->name); });
    return models::sum_of_squares(params);
  }
  std::size_t saved_bytes() const {
    std::size_t r = 0;
    for (const auto& c : chunks)
      r += c.saved_bytes();
    return r;
  }
};

struct step_run;

struct shard_state {
  shard_config cfg;
  std::string label;
  std::shared_ptr<compute_state> compute;
  caf::actor device, prev, next, trainer;
  std::optional<runtime::step_msg> step;
  std::shared_ptr<step_run> run; ///< the step's actions, handed to the device
  bool busy = false;             ///< the device holds the run or a task
  bool optimizer_done = false;
  bool norm_requested = false;      ///< clipping: sum of squares computed or on its way
  std::optional<double> clip_total; ///< clipping: the trainer's global sum of squares
  // Data parallelism (cfg.replicas > 1).
  caf::actor group;            ///< this shard's collective rank
  std::vector<tensor> reduced; ///< per bucket: the all-reduced sum, once back
  std::size_t buckets_reduced = 0;
  bool flush_requested = false; ///< buckets without a backward are being launched
  std::optional<std::chrono::steady_clock::time_point> first_launch;
  std::map<std::size_t, std::chrono::steady_clock::time_point> launched_at;
  std::int64_t broadcasts = 0; ///< op ids of parameter broadcasts
  // Parameter servers (cfg.uses_ps()): the worker side, whether this step's
  // gradients went out, and when.
  ps_client ps;
  bool ps_wired = false; ///< ps_group_atom came
  bool ps_pushed = false;
  std::chrono::steady_clock::time_point ps_pushed_at;
  std::uint64_t ps_bytes_mark = 0; ///< the client's byte counters before this step's push
  std::int64_t step_samples = 0;   ///< this worker's training samples in the step
  runtime::stage_report report;
  // Tracing (cfg.trace): this thread's events, when the step began, since when
  // the shard has waited for an input after its actions (all-reduce, clip),
  // and the last input that arrived.
  runtime::trace_recorder trace;
  std::chrono::steady_clock::time_point step_began;
  std::optional<std::chrono::steady_clock::time_point> idle_since;
  const char* last_input = "";
  std::int32_t last_input_mb = 0;
  std::chrono::steady_clock::time_point last_input_at;
  static inline const char* name = "layer_shard";
};

using shard_actor = caf::stateful_actor<shard_state>;

/// Cuts the parameters of every chunk into buckets of about `bytes` bytes,
/// walking each chunk's layers from the last (backward's order). A bucket
/// never spans chunks; bytes == 0 gives one bucket per chunk.
void make_buckets(compute_state& c, std::int64_t bytes) {
  c.buckets.clear();
  c.buckets_at.assign(c.chunks.size(), {});
  for (std::size_t v = 0; v < c.chunks.size(); ++v) {
    auto& chunk = c.chunks[v];
    c.buckets_at[v].assign(chunk.size(), {});
    grad_bucket open;
    open.chunk = v;
    auto close = [&] {
      if (open.params.empty())
        return;
      c.buckets_at[v][open.ready_layer].push_back(c.buckets.size());
      c.buckets.push_back(std::move(open));
      open = grad_bucket{};
      open.chunk = v;
    };
    for (std::size_t l = chunk.size(); l-- > 0;) {
      for (auto& p : chunk.at(l).parameters()) {
        open.params.push_back(&p);
        open.numel += p.value.numel();
        open.ready_layer = l;
      }
      if (bytes > 0 && open.numel * 4 >= bytes)
        close();
    }
    close();
  }
  if (c.buckets.size() > 65536)
    throw runtime::input_error(std::to_string(c.buckets.size()) +
                               " gradient buckets (at most 65536): raise --bucket-mb");
  c.launched.assign(c.buckets.size(), false);
}

/// A bucket's gradients as one f32 tensor (zeros for a parameter that got no
/// gradient this step: a replica without samples). A bucket of one
/// parameter hands over the gradient itself (no copy).
runtime::tensor flatten(const grad_bucket& b) {
  auto fresh = [](const models::parameter* p) { return p->grad_fresh || !p->grad.defined(); };
  if (b.params.size() == 1 && !fresh(b.params[0]))
    return b.params[0]->grad;
  auto out = runtime::tensor::empty(runtime::dtype::f32, {b.numel});
  float* dst = out.mutable_data<float>();
  for (const auto* p : b.params) {
    const auto n = p->value.numel();
    if (fresh(p))
      std::fill_n(dst, n, 0.0f);
    else
      std::copy_n(p->grad.data<float>(), n, dst);
    dst += n;
  }
  return out;
}

/// Puts a bucket's all-reduced sum back into its parameters' gradients.
void unflatten(const grad_bucket& b, const runtime::tensor& sum) {
  if (sum.numel() != b.numel)
    throw std::logic_error("all-reduce of a gradient bucket returned " +
                           std::to_string(sum.numel()) + " values, expected " +
                           std::to_string(b.numel));
  const float* src = sum.data<float>();
  for (auto* p : b.params) {
    const auto n = p->value.numel();
    if (b.params.size() == 1 && sum.shape() == p->value.shape()) {
      p->grad = sum;
    } else {
      models::prepare_grad(*p);
      std::copy_n(src, n, p->grad.mutable_data<float>());
    }
    p->grad_fresh = false;
    src += n;
  }
}

/// FNV-1a over the bytes of every parameter value: equal on all replicas
/// exactly when their parameters are bitwise identical (up to collisions).
std::uint64_t params_digest(compute_state& c) {
  std::uint64_t h = 1469598103934665603ull;
  for (auto* p : c.parameters()) {
    const auto* bytes = static_cast<const unsigned char*>(p->value.raw_data());
    const auto n = p->value.nbytes();
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) { // a word at a time: the digest need not be FNV's
      std::uint64_t w;
      std::memcpy(&w, bytes + i, 8);
      h = (h ^ w) * 1099511628211ull;
    }
    for (; i < n; ++i)
      h = (h ^ bytes[i]) * 1099511628211ull;
  }
  return h;
}

/// After step `step`'s update, with the parameters in place: the injected
/// perturbation (cfg.perturb_step), then the digest when --check-replicas
/// asks for one at this step.
std::optional<std::uint64_t> after_update(compute_state& c, std::int64_t step) {
  if (step == c.cfg.perturb_step)
    for (auto* p : c.parameters())
      if (p->value.numel() > 0) {
        p->value.mutable_data<float>()[0] += 1e-3f;
        break;
      }
  const auto every = c.cfg.check_replicas;
  if (every > 0 && (step + 1) % every == 0)
    return params_digest(c);
  return std::nullopt;
}

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

/// One action's work on the device: run on the device thread, touching only
/// the compute state and sending its own outputs.
using device_work = std::function<task_done()>;

/// One step's action list, walked by the device thread (run_actions): each
/// action runs as soon as its inputs are in the inbox, in schedule order (the
/// schedule stays the flow control), then `tail`. The shard makes it at the
/// step_msg and hands it over; from then on only the device thread touches
/// it (the inbox's mutex orders a park and the shard's resume).
struct step_run {
  runtime::step_msg step;
  std::vector<action> actions;
  std::vector<std::int64_t> final_backward; ///< per chunk: index of its last backward action
  std::vector<device_work> tail; ///< after the last action: optimizer, or bucket flush / norm
  caf::actor shard, prev, next;
  float grad_scale = 1; ///< the loss gradient's 1 / predictions of the global batch
  std::size_t pc = 0;   ///< the next action
  std::int32_t in_flight = 0;
  task_done total; ///< sent to the shard once the tail is done
  /// Since when the device has had nothing to run (a wait, for the trace).
  std::optional<std::chrono::steady_clock::time_point> idle_since;
};

// -- tracing (cfg.trace, runtime/telemetry/trace_recorder.hpp) ---------------------------
// The shard records step spans, input arrivals and the waits after a step's
// actions (all-reduce, clip) on its own thread. The device records its work
// and, while it walks the actions, its waits for inputs (run_actions) into
// compute->trace, which the shard absorbs on task_done (that message orders
// the two threads, as for the parameters). Every helper is one branch when
// tracing is off.

using steady_clock = std::chrono::steady_clock;

/// Wraps the work just appended to `chain` (action `a`, or the optimizer when
/// null) so that the device thread records when it ran: the kernels, the loss,
/// and handing the output to the transport (an enqueue; sends never block).
void trace_work(shard_actor* self, std::vector<device_work>& chain, const action* a,
                const char* update = "optimizer") {
  auto& st = self->state;
  if (!st.trace.enabled())
    return;
  const char* name = !a ? update : a->what == action::kind::forward ? "forward" : "backward";
  const char* category = st.step->training ? "compute" : "eval";
  chain.back() = [c = st.compute, work = std::move(chain.back()), name, category,
                  step = st.step->step, mb = a ? a->mb : -1, chunk = a ? a->chunk : 0]() {
    auto t0 = steady_clock::now();
    auto d = work();
    if (mb < 0)
      c->trace.complete(name, category, t0, steady_clock::now(), {{"step", step}});
    else
      c->trace.complete(name, category, t0, steady_clock::now(),
                        {{"step", step}, {"mb", mb}, {"chunk", chunk}});
    return d;
  };
}

/// An input arrived (recorded before it is stored): an instant on the track.
void trace_input(shard_actor* self, const char* what, std::int64_t step, std::int32_t mb,
                 std::int32_t chunk = 0) {
  auto& st = self->state;
  if (!st.trace.enabled())
    return;
  st.last_input_at = steady_clock::now();
  st.last_input = what;
  st.last_input_mb = mb;
  st.trace.instant(what, "input", st.last_input_at, {{"step", step}, {"mb", mb}, {"chunk", chunk}});
}

/// A step_msg arrived: the step's span begins.
void trace_step_begin(shard_actor* self) {
  auto& st = self->state;
  if (st.trace.enabled())
    st.step_began = steady_clock::now();
}

/// After advance(): a shard inside a step with nothing on its device waits
/// for an input from `since` (default: now) on.
void trace_idle(shard_actor* self, std::optional<steady_clock::time_point> since = {}) {
  auto& st = self->state;
  if (st.trace.enabled() && !st.busy && st.step)
    st.idle_since = since ? *since : steady_clock::now();
}

/// Work is submitted: a wait, if the shard was waiting, ended when the last
/// input arrived.
void trace_wait_end(shard_actor* self) {
  auto& st = self->state;
  if (!st.idle_since)
    return;
  st.trace.complete("wait", "wait", *st.idle_since, st.last_input_at,
                    {{"step", st.step->step}, {"input", st.last_input}, {"mb", st.last_input_mb}});
  st.idle_since.reset();
}

/// The step's report was sent: the step's span, from its step_msg on.
void trace_step_end(shard_actor* self) {
  auto& st = self->state;
  st.trace.complete_until_now("step", st.step->training ? "step" : "eval", st.step_began,
                              {{"step", st.step->step}, {"microbatches", st.step->microbatches}});
}

/// Adds one action's (or tail work's) figures to the run's.
void add_up(task_done& total, const task_done& d, double seconds, std::uint64_t saved_bytes) {
  total.loss_sum += d.loss_sum;
  total.correct += d.correct;
  total.samples += d.samples;
  total.messages_sent += d.messages_sent;
  total.bytes_sent += d.bytes_sent;
  total.tokens += d.tokens;
  total.seconds += seconds;
  if (d.grad_sumsq)
    total.grad_sumsq = d.grad_sumsq;
  if (d.digest)
    total.digest = d.digest;
  total.forward_samples += d.forward_samples;
  total.peak_in_flight = std::max(total.peak_in_flight, d.peak_in_flight);
  total.peak_saved_bytes = std::max<std::uint64_t>(total.peak_saved_bytes, saved_bytes);
}

/// Runs `chain` on the device as one task, in order; the shard gets one
/// task_done with the summed figures, or a task_failed with the first
/// exception's message (the rest of the chain is skipped). One task per chain
/// instead of per action saves a shard -> device -> shard round trip (two
/// thread wake-ups) for every action but the first.
void submit(shard_actor* self, std::vector<device_work> chain) {
  auto& st = self->state;
  st.busy = true;
  trace_wait_end(self);
  auto me = caf::actor_cast<caf::actor>(self);
  caf::anon_send(st.device, device_task{[me, c = st.compute, chain = std::move(chain)]() mutable {
                   auto t0 = std::chrono::steady_clock::now();
                   try {
                     task_done total;
                     for (auto& work : chain)
                       add_up(total, work(), 0.0, c->saved_bytes());
                     total.seconds = seconds_since(t0);
                     caf::anon_send(me, std::move(total));
                   } catch (const std::exception& e) {
                     caf::anon_send(me, task_failed{e.what()});
                   }
                 }});
}

void fail(shard_actor* self, const std::string& what) {
  self->quit(caf::make_error(caf::sec::runtime_error, self->state.label + ": " + what));
}

void finish_step(shard_actor* self) {
  auto& st = self->state;
  st.report.stage = st.cfg.stage;
  st.report.replica = st.cfg.replica;
  st.report.tp_rank = st.cfg.tp_rank;
  st.report.step = st.step->step;
  self->send(st.trainer, st.report);
  trace_step_end(self);
  st.step.reset();
  st.run.reset();
}

void advance(shard_actor* self);

/// Data parallelism: a bucket's gradients are complete on the device; its
/// all-reduce runs in the stage's collective group while backward goes on.
void start_allreduce(shard_actor* self, bucket_ready& b) {
  auto& st = self->state;
  if (!st.step || st.step->step != b.step || !st.group || b.bucket >= st.reduced.size()) {
    fail(self, "gradient bucket " + std::to_string(b.bucket) + " of step " +
                   std::to_string(b.step) + " outside a data-parallel step");
    return;
  }
  const auto now = steady_clock::now();
  if (!st.first_launch)
    st.first_launch = now;
  st.launched_at[b.bucket] = now;
  st.report.buckets += 1;
  st.report.allreduce_bytes += b.data.nbytes();
  const auto op = b.step * 65536 + static_cast<std::int64_t>(b.bucket);
  self->request(st.group, caf::infinite, runtime::allreduce_atom::value, op, std::move(b.data))
      .then(
          [self, step = b.step, bucket = b.bucket](tensor& sum) {
            auto& s = self->state;
            if (!s.step || s.step->step != step)
              return;
            const auto t = steady_clock::now();
            s.trace.complete("allreduce", "comm", s.launched_at[bucket], t,
                             {{"step", step},
                              {"bucket", static_cast<std::int64_t>(bucket)},
                              {"bytes", static_cast<std::int64_t>(sum.nbytes())}});
            s.reduced[bucket] = std::move(sum);
            if (++s.buckets_reduced == s.reduced.size())
              s.report.allreduce_seconds =
                  std::chrono::duration<double>(t - *s.first_launch).count();
            trace_input(self, "allreduce", step, -1);
            advance(self);
          },
          [self](caf::error& err) {
            fail(self, "gradient all-reduce failed: " + self->system().render(err));
          });
}

/// Every parameter's value, flattened in parameters() order.
tensor flatten_values(compute_state& c) {
  std::int64_t n = 0;
  for (auto* p : c.parameters())
    n += p->value.numel();
  auto out = tensor::empty(runtime::dtype::f32, {n});
  float* dst = out.mutable_data<float>();
  for (auto* p : c.parameters()) {
    std::copy_n(p->value.data<float>(), p->value.numel(), dst);
    dst += p->value.numel();
  }
  return out;
}

/// (sync_params_atom): replica 0 broadcasts its parameters in the stage's
/// group, the others load them; answered once they are in place.
caf::result<bool> sync_params(shard_actor* self) {
  auto& st = self->state;
  if (!st.cfg.all_reduces()) // one replica, or parameter servers (same init everywhere)
    return true;
  if (!st.group)
    return caf::make_error(caf::sec::runtime_error,
                           st.label + ": parameter broadcast before its collective group");
  auto rp = self->make_response_promise<bool>();
  const auto op = -(++st.broadcasts);
  auto mine = st.cfg.replica == 0 ? flatten_values(*st.compute) : tensor{};
  self->request(st.group, caf::infinite, runtime::broadcast_atom::value, op, std::int32_t{0},
                std::move(mine))
      .then(
          [self, rp](tensor& all) mutable {
            auto& c = *self->state.compute;
            std::int64_t n = 0;
            for (auto* p : c.parameters())
              n += p->value.numel();
            if (all.numel() != n || all.type() != runtime::dtype::f32) {
              rp.deliver(caf::make_error(caf::sec::runtime_error,
                                         self->state.label + ": broadcast parameters have " +
                                             std::to_string(all.numel()) + " values, expected " +
                                             std::to_string(n)));
              return;
            }
            const float* src = all.data<float>();
            for (auto* p : c.parameters()) {
              auto v = tensor::empty(runtime::dtype::f32, p->value.shape());
              std::copy_n(src, p->value.numel(), v.mutable_data<float>());
              p->value = std::move(v);
              src += p->value.numel();
            }
            rp.deliver(true);
          },
          [self, rp](caf::error& err) mutable {
            rp.deliver(caf::make_error(
                caf::sec::runtime_error,
                self->state.label + ": parameter broadcast failed: " + self->system().render(err)));
          });
  return rp;
}

/// Data parallelism, on the device thread: hands every bucket of `chunk`
/// that layer `layer` completes (all of them with layer < 0) to the shard.
void launch_buckets(compute_state& c, const caf::actor& shard, std::int64_t step, std::size_t chunk,
                    std::optional<std::size_t> layer) {
  auto launch = [&](std::size_t b) {
    if (c.launched[b])
      return;
    c.launched[b] = true;
    caf::anon_send(shard, bucket_ready{step, b, flatten(c.buckets[b])});
    if (c.trace.enabled())
      c.trace.instant("bucket ready", "comm", steady_clock::now(),
                      {{"step", step}, {"bucket", static_cast<std::int64_t>(b)}});
  };
  if (layer) {
    for (auto b : c.buckets_at[chunk][*layer])
      launch(b);
  } else {
    for (std::size_t b = 0; b < c.buckets.size(); ++b)
      launch(b);
  }
}

// -- the device side of a step (run_actions, on the device thread) -----------

/// Inbox lock held: whether action `a` of `step` can run.
bool inputs_ready(const compute_state& c, std::int64_t step, const action& a) {
  const key k{step, a.mb, a.chunk};
  if (a.what == action::kind::forward)
    return c.in.activations.count(k) > 0 && (!c.cfg.owns_loss(a.chunk) || c.in.labels.count(k) > 0);
  return c.cfg.owns_loss(a.chunk) || c.in.grads.count(k) > 0;
}

/// What an action takes out of the inbox, and when the last of it arrived.
struct action_inputs {
  runtime::activation_msg activation;
  tensor labels;
  tensor grad;
  steady_clock::time_point arrived;
  const char* last = ""; ///< the input that arrived last (the one a wait was for)
};

/// Inbox lock held, inputs_ready(): moves action `a`'s inputs out.
action_inputs take_inputs(compute_state& c, std::int64_t step, const action& a) {
  const key k{step, a.mb, a.chunk};
  action_inputs r;
  if (a.what == action::kind::forward) {
    auto in = c.in.activations.extract(k);
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
  } else if (!c.cfg.owns_loss(a.chunk)) {
    auto g = c.in.grads.extract(k);
    r.grad = std::move(g.mapped().value);
    r.arrived = g.mapped().at;
    r.last = "gradient";
  }
  return r;
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
    auto out = c.sequence_loss
                   ? models::sequence_cross_entropy(y, in.labels, r.grad_scale, ctx.training)
                   : models::softmax_cross_entropy(y, in.labels, r.grad_scale, ctx.training);
    d.loss_sum = out.loss_sum;
    d.correct = out.correct;
    d.samples = y.dim(0);
    d.tokens = c.sequence_loss ? y.dim(0) * y.dim(1) : y.dim(0);
    if (ctx.training)
      c.dlogits[ctx.mb] = std::move(out.dlogits);
  } else {
    d.messages_sent = 1;
    d.bytes_sent = y.nbytes();
    runtime::transport::deliver(c.cfg.courier, r.next,
                                runtime::activation_msg{ctx.step, ctx.mb, ctx.sample_offset,
                                                        ctx.training, std::move(y),
                                                        c.cfg.next_chunk(a.chunk)});
  }
  return d;
}

task_done run_backward(compute_state& c, step_run& r, const action& a, bool final, tensor dy) {
  --r.in_flight;
  const auto chunk = static_cast<std::size_t>(a.chunk);
  // The step's last backward through a chunk completes its gradients layer
  // by layer: with data parallelism each finished bucket starts its
  // all-reduce at once.
  std::function<void(std::size_t)> after_layer;
  if (final && c.cfg.all_reduces())
    after_layer = [&c, &r, chunk](std::size_t layer) {
      launch_buckets(c, r.shard, r.step.step, chunk, layer);
    };
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
  auto dx = c.chunks[chunk].backward(dy, a.mb, !first, after_layer);
  slow_down(c.cfg.slow_factor, t0);
  task_done d;
  if (!first) {
    d.messages_sent = 1;
    d.bytes_sent = dx.nbytes();
    runtime::transport::deliver(
        c.cfg.courier, r.prev,
        runtime::gradient_msg{r.step.step, a.mb, std::move(dx), c.cfg.prev_chunk(a.chunk)});
  }
  return d;
}

/// The device thread's walk through a step: runs every action whose inputs
/// are here, in schedule order, each sending its output the moment it is
/// done; with nothing ready it parks (returns to its mailbox) until the
/// shard resumes it. (A bounded spin before parking was tried: it caught few
/// inputs, waits being a neighbour's kernels, and on the busy 2-core machine
/// a spinning thread lost its wake-up preemption and started late by whole
/// scheduler slices; see docs/benchmarks.md.) After the last action it runs
/// the tail and sends the shard one task_done for the whole step (or a
/// task_failed with the first exception's message).
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
        c.in.parked = true;
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
      const auto t0 = steady_clock::now();
      auto d =
          forward ? run_forward(c, r, a, in) : run_backward(c, r, a, final, std::move(in.grad));
      const auto t1 = steady_clock::now();
      c.trace.complete(forward ? "forward" : "backward", r.step.training ? "compute" : "eval", t0,
                       t1, {{"step", r.step.step}, {"mb", a.mb}, {"chunk", a.chunk}});
      add_up(r.total, d, std::chrono::duration<double>(t1 - t0).count(), c.saved_bytes());
    }
    for (auto& work : r.tail) {
      const auto t0 = steady_clock::now();
      auto d = work();
      add_up(r.total, d, seconds_since(t0), c.saved_bytes());
    }
    r.tail.clear();
    caf::anon_send(r.shard, r.total);
  } catch (const std::exception& e) {
    caf::anon_send(r.shard, task_failed{e.what()});
  }
}

// -- the shard side of a step --------------------------------------------------

/// Hands the run to the device (again, after it parked).
void resume_run(shard_actor* self) {
  auto& st = self->state;
  caf::anon_send(st.device, device_task{[c = st.compute, r = st.run]() { run_actions(c, r); }});
}

/// Stores an input that arrived (already checked), and resumes the device
/// if it parked waiting for exactly what is now complete.
template <class T>
void store_input(shard_actor* self, std::map<key, arrived<T>> inbox::*slot, const key& k, T value) {
  auto& st = self->state;
  auto& c = *st.compute;
  bool resume = false;
  {
    std::lock_guard lock{c.in.mutex};
    (c.in.*slot).insert_or_assign(k, arrived<T>{std::move(value), st.last_input_at});
    if (c.in.parked && st.run && inputs_ready(c, st.run->step.step, c.in.waiting_for)) {
      c.in.parked = false;
      resume = true;
    }
  }
  if (resume)
    resume_run(self);
}

/// The work a training step needs once all its actions are on the device,
/// as far as it can be decided now: with data parallelism a flush of the
/// buckets no backward completed (a replica without samples joins with
/// zeros); once the gradients are complete (summed over replicas), their sum
/// of squares for clipping (the update then waits for the trainer's global
/// total, clip_atom), or the optimizer.
std::vector<device_work> end_of_step_work(shard_actor* self) {
  auto& st = self->state;
  std::vector<device_work> chain;
  if (!st.step->training || st.cfg.uses_ps()) // the ps shards update (advance())
    return chain;
  const bool data_parallel = st.cfg.all_reduces();
  if (data_parallel && !st.flush_requested) {
    st.flush_requested = true;
    chain.push_back(
        [c = st.compute, me = caf::actor_cast<caf::actor>(self), step = st.step->step]() {
          launch_buckets(*c, me, step, 0, std::nullopt);
          return task_done{};
        });
  }
  // The summed gradients, for the first update task to put in place.
  const bool reduced = !data_parallel || st.buckets_reduced == st.compute->buckets.size();
  auto take_reduced = [self] {
    auto r = std::move(self->state.reduced);
    self->state.reduced.clear();
    return r;
  };
  const bool clipping = st.cfg.clip_norm > 0;
  if (reduced && clipping && !st.norm_requested) {
    st.norm_requested = true;
    chain.push_back([c = st.compute, sums = take_reduced()]() {
      for (std::size_t b = 0; b < sums.size(); ++b)
        unflatten(c->buckets[b], sums[b]);
      task_done d;
      d.grad_sumsq = c->grad_sum_of_squares();
      return d;
    });
    trace_work(self, chain, nullptr, "grad norm");
  } else if (reduced && !st.optimizer_done && (!clipping || st.clip_total)) {
    st.optimizer_done = true;
    chain.push_back([c = st.compute, lr = st.step->lr, clip = st.cfg.clip_norm,
                     total = st.clip_total, sums = take_reduced(), step = st.step->step]() {
      for (std::size_t b = 0; b < sums.size(); ++b)
        unflatten(c->buckets[b], sums[b]);
      auto params = c->parameters();
      if (total)
        models::clip_by_global_norm(params, *total, clip);
      c->opt->step(params, lr);
      for (auto& chunk : c->chunks)
        chunk.zero_grad();
      std::fill(c->launched.begin(), c->launched.end(), false);
      task_done d;
      d.digest = after_update(*c, step);
      return d;
    });
    trace_work(self, chain, nullptr);
  }
  return chain;
}

/// A step begins: its whole action list, and the end-of-step work that can
/// be decided now, go to the device as one run. It starts at once if the
/// first action's inputs are here, else it is parked from the start and the
/// input that completes them resumes it.
void start_run(shard_actor* self, std::vector<action> actions) {
  auto& st = self->state;
  auto r = std::make_shared<step_run>();
  r->step = *st.step;
  r->final_backward.assign(st.cfg.chunks.size(), -1);
  for (std::size_t i = 0; i < actions.size(); ++i)
    if (actions[i].what == action::kind::backward)
      r->final_backward[static_cast<std::size_t>(actions[i].chunk)] = static_cast<std::int64_t>(i);
  r->actions = std::move(actions);
  r->shard = caf::actor_cast<caf::actor>(self);
  r->prev = st.prev;
  r->next = st.next;
  // One over the step's predictions: samples, or samples x context for a
  // language model (models/train/sequence_loss.hpp).
  const std::int64_t per_sample = st.compute->sequence_loss ? st.cfg.model.input_shape.at(0) : 1;
  r->grad_scale = 1.0f / static_cast<float>(r->step.global_batch * per_sample);
  r->tail = end_of_step_work(self);
  if (r->actions.empty() && r->tail.empty()) {
    finish_step(self);
    return;
  }
  bool go = true;
  {
    auto& c = *st.compute;
    std::lock_guard lock{c.in.mutex};
    if (!r->actions.empty() && !inputs_ready(c, r->step.step, r->actions.front())) {
      go = false;
      r->idle_since = st.step_began; // the trace's wait starts with the step
      c.in.waiting_for = r->actions.front();
    }
    c.in.parked = !go;
  }
  st.run = std::move(r);
  st.busy = true;
  if (go)
    resume_run(self);
}

void push_to_ps(shard_actor* self);
void apply_pulled(shard_actor* self);

/// The step's parameter digest (--check-replicas) goes into its report.
void note_digest(shard_state& st, std::optional<std::uint64_t> digest) {
  if (!digest)
    return;
  st.report.has_digest = true;
  st.report.params_digest = *digest;
}

/// After the device finished the run or a task, or an all-reduce or the
/// clipping total came back (or the parameter servers answered): the rest
/// of the step's end, then its report.
void advance(shard_actor* self) {
  auto& st = self->state;
  if (st.busy || !st.step)
    return;
  if (st.cfg.uses_ps() && st.step->training && !st.optimizer_done) {
    if (!st.ps_pushed)
      push_to_ps(self);
    else if (st.ps.ready())
      apply_pulled(self);
    if (!st.optimizer_done)
      return; // the pulled parameters come as ps_msg
  }
  auto chain = end_of_step_work(self);
  if (!chain.empty()) {
    submit(self, std::move(chain));
    return;
  }
  if (!st.step->training || st.optimizer_done)
    finish_step(self);
}

/// Parameter servers, at the end of a step's actions (the device is idle):
/// push the gradients, ask for the next step's parameters. In sync mode the
/// gradients are the global batch's share (scale 1: the ps shard sums the
/// workers); otherwise each push is applied alone, as this worker's mean
/// gradient (scaled from 1 / global batch to 1 / its own samples).
void push_to_ps(shard_actor* self) {
  auto& st = self->state;
  st.ps_pushed = true;
  st.ps_pushed_at = steady_clock::now();
  const auto step = st.step->step;
  if (!st.ps_wired) {
    fail(self,
         "training step " + std::to_string(step) + " before its parameter servers were given");
    return;
  }
  if (!st.ps.active()) { // a stage without parameters
    note_digest(st, after_update(*st.compute, step));
    st.optimizer_done = true;
    return;
  }
  float scale = 1.0f;
  if (st.cfg.ps != ps_mode::sync && st.step_samples > 0)
    scale = static_cast<float>(st.step->global_batch) / static_cast<float>(st.step_samples);
  auto params = st.compute->parameters();
  st.ps_bytes_mark = st.ps.bytes_pushed() + st.ps.bytes_pulled();
  try {
    st.ps.push(step, params, st.step->lr, scale);
    st.ps.request(step + 1);
  } catch (const std::exception& e) {
    fail(self, std::string{"pushing to the parameter servers: "} + e.what());
    return;
  }
  st.trace.instant("ps push", "comm", st.ps_pushed_at, {{"step", step}});
}

/// Every ps shard answered: the next step's parameters go in place.
void apply_pulled(shard_actor* self) {
  auto& st = self->state;
  auto params = st.compute->parameters();
  try {
    st.ps.apply(params);
  } catch (const std::exception& e) {
    fail(self, std::string{"pulled parameters: "} + e.what());
    return;
  }
  for (auto& chunk : st.compute->chunks)
    chunk.zero_grad();
  note_digest(st, after_update(*st.compute, st.step->step));
  const auto now = steady_clock::now();
  st.report.ps_bytes += st.ps.bytes_pushed() + st.ps.bytes_pulled() - st.ps_bytes_mark;
  st.report.ps_seconds += std::chrono::duration<double>(now - st.ps_pushed_at).count();
  st.trace.complete("ps push+pull", "comm", st.ps_pushed_at, now, {{"step", st.step->step}});
  st.optimizer_done = true;
}

runtime::named_tensors collect_params(compute_state& c) {
  runtime::named_tensors r;
  for (auto* p : c.parameters()) {
    r.names.push_back(p->name);
    r.tensors.push_back(p->value);
  }
  return r;
}

void load_params(compute_state& c, const runtime::named_tensors& in) {
  if (in.names.size() != in.tensors.size())
    throw runtime::input_error("parameter message with mismatched names and tensors");
  std::map<std::string, const tensor*> by_name;
  for (std::size_t i = 0; i < in.names.size(); ++i)
    by_name[in.names[i]] = &in.tensors[i];
  for (auto* p : c.parameters()) {
    auto it = by_name.find(p->name);
    if (it == by_name.end())
      throw runtime::input_error("parameter '" + p->name + "' missing");
    const auto& t = *it->second;
    if (t.type() != p->value.type() || t.shape() != p->value.shape())
      throw runtime::input_error("parameter '" + p->name + "' has shape " +
                                 runtime::to_string(t.shape()) + ", expected " +
                                 runtime::to_string(p->value.shape()));
    p->value = t;
  }
}

/// False (and the shard fails) for a message addressed to a chunk it does not hold.
bool known_chunk(shard_actor* self, const char* what, std::int32_t chunk) {
  if (chunk >= 0 && chunk < self->state.cfg.virtual_stages())
    return true;
  fail(self, std::string{what} + " for chunk " + std::to_string(chunk) + ", but it holds " +
                 std::to_string(self->state.cfg.virtual_stages()));
  return false;
}

caf::behavior layer_shard(shard_actor* self, shard_config cfg) {
  auto& st = self->state;
  st.cfg = std::move(cfg);
  st.label = "layer_shard[stage " + std::to_string(st.cfg.stage) + ", layers ";
  for (std::size_t v = 0; v < st.cfg.chunks.size(); ++v)
    st.label += (v ? ", " : "") + std::to_string(st.cfg.chunks[v].begin) + ".." +
                std::to_string(st.cfg.chunks[v].end);
  st.label += ")";
  if (st.cfg.replicas > 1)
    st.label += " of replica " + std::to_string(st.cfg.replica);
  if (st.cfg.tp > 1)
    st.label += ", tensor-parallel rank " + std::to_string(st.cfg.tp_rank);
  try {
    st.compute = std::make_shared<compute_state>();
    st.compute->cfg = st.cfg;
    if (st.cfg.tp > 1) {
      st.compute->tp = std::make_shared<tp_group_client>(self->system(), st.cfg.tp_rank, st.cfg.tp);
      for (const auto& [name, splits] : models::tp_layout(st.cfg.model, st.cfg.tp))
        if (splits.at(static_cast<std::size_t>(st.cfg.tp_rank)).axis < 0)
          st.compute->replicated.insert(name);
    }
    for (const auto& r : st.cfg.chunks)
      if (st.compute->tp)
        st.compute->chunks.push_back(models::instantiate_tensor_parallel(
            st.cfg.model, r.begin, r.end, st.cfg.seed, st.compute->tp));
      else
        st.compute->chunks.emplace_back(
            models::instantiate(st.cfg.model, r.begin, r.end, st.cfg.seed));
    if (st.cfg.all_reduces())
      make_buckets(*st.compute, st.cfg.bucket_bytes);
    st.compute->opt = models::make_optimizer(st.cfg.optimizer);
    st.compute->sequence_loss = models::is_sequence_model(st.cfg.model);
  } catch (const std::exception& e) {
    fail(self, e.what());
    return {};
  }
  if (st.cfg.trace) // track 0 of a process is the trainer's
    st.trace = st.compute->trace = runtime::trace_recorder{
        (st.cfg.replica * st.cfg.stages + st.cfg.stage) * st.cfg.tp + st.cfg.tp_rank + 1};
  // Parameters and optimizer state are only read or replaced between steps,
  // when no device task can be touching them.
  auto guard = [self](const char* what) -> caf::error {
    if (self->state.busy || self->state.step)
      return caf::make_error(caf::sec::runtime_error,
                             self->state.label + ": " + what + " while a step is running");
    return caf::none;
  };
  return {
      [self](runtime::wire_atom, caf::actor device, caf::actor prev, caf::actor next) {
        auto& s = self->state;
        s.device = std::move(device);
        s.prev = std::move(prev);
        s.next = std::move(next);
        return true;
      },
      [self](runtime::step_msg& m) {
        auto& s = self->state;
        if (s.step) {
          fail(self, "step " + std::to_string(m.step) + " began before step " +
                         std::to_string(s.step->step) + " ended");
          return;
        }
        const int chunks = s.cfg.virtual_stages();
        // A data-parallel replica whose share of a short last batch is empty
        // has no micro-batches: it only joins the all-reduce.
        std::vector<action> actions;
        if (m.microbatches > 0)
          actions = m.training ? make_schedule(s.cfg.schedule, s.cfg.stages, s.cfg.stage,
                                               m.microbatches, chunks)
                               : forward_only_schedule(m.microbatches, s.cfg.stages, chunks);
        s.reduced.assign(s.compute->buckets.size(), tensor{});
        s.buckets_reduced = 0;
        s.flush_requested = false;
        s.first_launch.reset();
        s.launched_at.clear();
        // Whoever starts a step gets its report (the trainer).
        s.trainer = caf::actor_cast<caf::actor>(self->current_sender());
        s.step = m;
        s.optimizer_done = false;
        s.norm_requested = false;
        s.clip_total.reset();
        s.report = {};
        s.ps_pushed = false;
        s.step_samples = 0;
        trace_step_begin(self);
        start_run(self, std::move(actions));
        trace_idle(self, s.step_began);
      },
      [self](runtime::activation_msg& m) {
        trace_input(self, "activation", m.step, m.mb, m.chunk);
        if (!known_chunk(self, "activation", m.chunk))
          return;
        const key k{m.step, m.mb, m.chunk};
        store_input(self, &inbox::activations, k, std::move(m));
      },
      [self](runtime::gradient_msg& m) {
        trace_input(self, "gradient", m.step, m.mb, m.chunk);
        if (!known_chunk(self, "gradient", m.chunk))
          return;
        store_input(self, &inbox::grads, key{m.step, m.mb, m.chunk}, std::move(m.data));
      },
      [self](runtime::labels_msg& m) {
        trace_input(self, "labels", m.step, m.mb);
        const key k{m.step, m.mb, self->state.cfg.virtual_stages() - 1};
        store_input(self, &inbox::labels, k, std::move(m.labels));
      },
      [self](task_done& d) {
        auto& s = self->state;
        s.busy = false;
        s.trace.absorb(s.compute->trace);
        s.report.loss_sum += d.loss_sum;
        s.report.correct += d.correct;
        s.report.samples += d.samples;
        s.report.compute_seconds += d.seconds;
        s.report.messages_sent += d.messages_sent;
        s.report.bytes_sent += d.bytes_sent;
        s.report.tokens += d.tokens;
        s.step_samples += d.forward_samples;
        s.report.peak_in_flight = std::max(s.report.peak_in_flight, d.peak_in_flight);
        note_digest(s, d.digest);
        if (d.grad_sumsq) {
          s.report.grad_sumsq = *d.grad_sumsq;
          self->send(s.trainer, runtime::grad_sumsq_atom::value, s.step->step,
                     static_cast<std::int32_t>(
                         (s.cfg.replica * s.cfg.stages + s.cfg.stage) * s.cfg.tp + s.cfg.tp_rank),
                     *d.grad_sumsq);
        }
        s.report.peak_saved_bytes = std::max<std::uint64_t>(
            {s.report.peak_saved_bytes, d.peak_saved_bytes, s.compute->saved_bytes()});
        advance(self);
        trace_idle(self);
      },
      [self](task_failed& f) { fail(self, f.what); },
      [self](bucket_ready& b) { start_allreduce(self, b); },
      [self](runtime::dp_group_atom, caf::actor group) {
        self->state.group = std::move(group);
        return true;
      },
      [self](runtime::ps_group_atom, std::vector<caf::actor>& shards) {
        auto& s = self->state;
        if (!s.cfg.uses_ps()) {
          fail(self, "given parameter servers, but it was not configured for them");
          return false;
        }
        s.ps_wired = true;
        try {
          s.ps = ps_client{s.cfg.stage,       s.cfg.replica, s.cfg.ps_layout,
                           std::move(shards), s.cfg.courier, caf::actor_cast<caf::actor>(self)};
        } catch (const std::exception& e) {
          fail(self, std::string{"parameter servers: "} + e.what());
          return false;
        }
        return true;
      },
      [self](runtime::ps_msg& m) {
        auto& s = self->state;
        if (!s.step || !s.ps_pushed || s.optimizer_done) {
          fail(self, "parameters from ps shard " + std::to_string(m.shard) + " for step " +
                         std::to_string(m.step) + " outside a pull");
          return;
        }
        try {
          if (!s.ps.on_params(std::move(m)))
            return;
        } catch (const std::exception& e) {
          fail(self, std::string{"pulled parameters: "} + e.what());
          return;
        }
        advance(self);
      },
      [self](runtime::tp_group_atom, caf::actor rank) {
        auto& s = self->state;
        if (!s.compute->tp) {
          fail(self, "given a tensor-parallel rank, but it holds no tensor-parallel layers");
          return false;
        }
        s.compute->tp->set_rank_actor(std::move(rank));
        return true;
      },
      [self, guard](runtime::sync_params_atom) -> caf::result<bool> {
        if (auto err = guard("synchronising parameters"))
          return err;
        return sync_params(self);
      },
      [self](runtime::clip_atom, std::int64_t step, double total) {
        auto& s = self->state;
        trace_input(self, "clip", step, -1);
        if (!s.step || s.step->step != step || !s.norm_requested || s.busy || s.clip_total) {
          fail(self, "clip for step " + std::to_string(step) +
                         " before this shard reported its gradients' sum of squares");
          return;
        }
        s.clip_total = total;
        advance(self);
      },
      [self, guard](runtime::get_params_atom) -> caf::result<runtime::named_tensors> {
        if (auto err = guard("reading parameters"))
          return err;
        return collect_params(*self->state.compute);
      },
      [self, guard](runtime::set_params_atom, runtime::named_tensors& in) -> caf::result<bool> {
        if (auto err = guard("loading parameters"))
          return err;
        try {
          load_params(*self->state.compute, in);
        } catch (const std::exception& e) {
          return caf::make_error(caf::sec::invalid_argument, self->state.label + ": " + e.what());
        }
        return true;
      },
      [self, guard](runtime::get_trace_atom) -> caf::result<std::string> {
        if (auto err = guard("reading the trace"))
          return err;
        return self->state.trace.to_json().dump();
      },
      [self, guard](runtime::get_state_atom) -> caf::result<runtime::named_tensors> {
        if (auto err = guard("reading optimizer state"))
          return err;
        runtime::named_tensors r;
        auto& opt = *self->state.compute->opt;
        for (const auto& [name, t] : opt.state()) {
          r.names.push_back(name);
          r.tensors.push_back(t);
        }
        r.meta_keys = {"steps"};
        r.meta_values = {std::to_string(opt.steps())};
        return r;
      },
      [self, guard](runtime::set_state_atom, runtime::named_tensors& in) -> caf::result<bool> {
        if (auto err = guard("loading optimizer state"))
          return err;
        try {
          std::int64_t steps = -1;
          for (std::size_t i = 0; i < in.meta_keys.size() && i < in.meta_values.size(); ++i)
            if (in.meta_keys[i] == "steps")
              steps = std::stoll(in.meta_values[i]);
          if (steps < 0)
            throw runtime::input_error("optimizer state without a step count");
          models::named_tensors state;
          for (std::size_t i = 0; i < in.names.size() && i < in.tensors.size(); ++i)
            state.emplace_back(in.names[i], in.tensors[i]);
          auto& c = *self->state.compute;
          c.opt->load_state(c.parameters(), state, steps);
        } catch (const std::exception& e) {
          return caf::make_error(caf::sec::invalid_argument, self->state.label + ": " + e.what());
        }
        return true;
      },
  };
}

} // namespace

nlohmann::json to_json(const shard_config& c) {
  nlohmann::json chunks = nlohmann::json::array();
  for (const auto& r : c.chunks)
    chunks.push_back({r.begin, r.end});
  return {{"stage", c.stage},
          {"stages", c.stages},
          {"model", c.model.to_json()},
          {"chunks", chunks},
          {"optimizer", c.optimizer},
          {"seed", c.seed},
          {"schedule", std::string{to_string(c.schedule)}},
          {"fault_step", c.fault_step},
          {"perturb_step", c.perturb_step},
          {"trace", c.trace},
          {"slow_factor", c.slow_factor},
          {"clip_norm", c.clip_norm},
          {"replica", c.replica},
          {"replicas", c.replicas},
          {"bucket_bytes", c.bucket_bytes},
          {"check_replicas", c.check_replicas},
          {"tp_rank", c.tp_rank},
          {"tp", c.tp},
          {"ps_layout", to_json(c.ps_layout)},
          {"ps_mode", std::string{to_string(c.ps)}}};
}

shard_config shard_config_from_json(const nlohmann::json& j) {
  try {
    shard_config c;
    c.stage = j.at("stage").get<int>();
    c.stages = j.at("stages").get<int>();
    c.model = models::model_spec::from_json(j.at("model"));
    for (const auto& r : j.at("chunks"))
      c.chunks.push_back({r.at(0).get<std::size_t>(), r.at(1).get<std::size_t>()});
    c.optimizer = j.at("optimizer");
    c.seed = j.at("seed").get<std::uint64_t>();
    c.schedule = parse_schedule_kind(j.at("schedule").get<std::string>());
    c.fault_step = j.at("fault_step").get<std::int64_t>();
    c.perturb_step = j.value("perturb_step", std::int64_t{-1});
    c.trace = j.value("trace", false); // optional: off unless asked for
    c.slow_factor = j.value("slow_factor", 1.0);
    if (!(c.slow_factor >= 1.0 && c.slow_factor <= 100.0))
      throw runtime::input_error("shard config: slow_factor " + std::to_string(c.slow_factor) +
                                 " outside [1, 100]");
    c.clip_norm = j.value("clip_norm", 0.0); // optional: off unless asked for
    if (!(c.clip_norm >= 0.0))
      throw runtime::input_error("shard config: clip_norm " + std::to_string(c.clip_norm) +
                                 " is negative");
    c.replica = j.value("replica", 0);
    c.replicas = j.value("replicas", 1);
    c.bucket_bytes = j.value("bucket_bytes", c.bucket_bytes);
    c.check_replicas = j.value("check_replicas", std::int64_t{0});
    if (c.replicas < 1 || c.replicas > 1024 || c.replica < 0 || c.replica >= c.replicas)
      throw runtime::input_error("shard config: replica " + std::to_string(c.replica) + " of " +
                                 std::to_string(c.replicas));
    c.tp_rank = j.value("tp_rank", 0);
    c.tp = j.value("tp", 1);
    if (c.tp < 1 || c.tp > 64 || c.tp_rank < 0 || c.tp_rank >= c.tp)
      throw runtime::input_error("shard config: tensor-parallel rank " + std::to_string(c.tp_rank) +
                                 " of " + std::to_string(c.tp));
    if (j.contains("ps_layout"))
      c.ps_layout = ps_assignment_from_json(j.at("ps_layout"));
    c.ps = parse_ps_mode(j.value("ps_mode", std::string{"sync"}));
    if (c.bucket_bytes < 0 || c.check_replicas < 0)
      throw runtime::input_error("shard config: negative bucket_bytes or check_replicas");
    if (c.stages < 1 || c.stage < 0 || c.stage >= c.stages)
      throw runtime::input_error("shard config: stage " + std::to_string(c.stage) + " of " +
                                 std::to_string(c.stages));
    if (c.chunks.empty() || c.chunks.size() > 64)
      throw runtime::input_error("shard config: " + std::to_string(c.chunks.size()) +
                                 " layer chunks (1 to 64 allowed)");
    for (const auto& r : c.chunks)
      if (r.begin >= r.end || r.end > c.model.layers.size())
        throw runtime::input_error("shard config: layer range [" + std::to_string(r.begin) + ", " +
                                   std::to_string(r.end) + ") outside the model");
    return c;
  } catch (const nlohmann::json::exception& e) {
    throw runtime::input_error(std::string{"shard config: "} + e.what());
  } catch (const std::invalid_argument& e) {
    throw runtime::input_error(std::string{"shard config: "} + e.what());
  }
}

caf::actor spawn_layer_shard(caf::actor_system& sys, shard_config cfg) {
  return sys.spawn(layer_shard, std::move(cfg));
}

} // namespace troupe::actors
