#include "actors/pipeline/layer_shard.hpp"

#include <algorithm>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <caf/event_based_actor.hpp>
#include <caf/message_handler.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>
#include <fmt/format.h>

#include "actors/pipeline/device_actor.hpp"
#include "actors/pipeline/gradient_buckets.hpp"
#include "actors/pipeline/ps_worker.hpp"
#include "actors/pipeline/shard_compute.hpp"
#include "actors/pipeline/shard_data_parallel.hpp"
#include "actors/pipeline/shard_state.hpp"
#include "actors/pipeline/shard_trace.hpp"
#include "actors/pipeline/step_runner.hpp"
#include "actors/pipeline/update_work.hpp"
#include "actors/protocol/messages.hpp"
#include "runtime/error.hpp"
#include "runtime/log.hpp"
#include "runtime/net/transport/courier.hpp"

namespace troupe::actors {

// The shard's internals (shard_state.hpp): its handlers and their helpers.
namespace detail {

using runtime::tensor;
using steady_clock = std::chrono::steady_clock;

void fail(shard_actor* self, const std::string& what) {
  self->quit(caf::make_error(caf::sec::runtime_error, self->state.label + ": " + what));
}

void finish_step(shard_actor* self) {
  auto& st = self->state;
  st.report.stage = st.cfg.stage;
  st.report.replica = st.cfg.replica;
  st.report.tp_rank = st.cfg.tp_rank;
  st.report.step = st.step->step;
  st.trace.step_end(*st.step); // before the send: what follows is the report's hand-off
  self->send(st.trainer, st.report);
  st.step.reset();
  st.run.reset();
}

/// Runs `chain` on the device as one task (step_runner.hpp's run_chain). One
/// task per chain instead of per piece of work saves a shard -> device ->
/// shard round trip (two thread wake-ups) for every piece but the first.
void submit(shard_actor* self, std::vector<device_work> chain) {
  auto& st = self->state;
  st.busy = true;
  st.trace.wait_end(st.step->step);
  auto me = caf::actor_cast<caf::actor>(self);
  caf::anon_send(st.device, device_task{[me, c = st.compute, chain = std::move(chain),
                                         sent = st.trace.handoff_begins(*st.step)]() mutable {
                   sent.done(c->trace);
                   run_chain(*c, chain, me);
                 }});
}

/// Stores an input that arrived (already checked), and resumes the device
/// if it parked waiting for exactly what is now complete.
template <class T>
void store_input(shard_actor* self, std::map<input_key, arrived<T>> inbox::*slot,
                 const input_key& k, T value) {
  auto& st = self->state;
  auto resume =
      store_arrived(*st.compute, slot, k, arrived<T>{std::move(value), st.trace.last_input_at});
  if (resume)
    resume_device(st.compute, std::move(resume), st.trace.handoff_begins(*st.step));
}

/// The step's parameter digest (--check-replicas) goes into its report.
void note_digest(shard_state& st, std::optional<std::uint64_t> digest) {
  if (!digest)
    return;
  st.report.has_digest = true;
  st.report.params_digest = *digest;
}

/// The step cannot finish because a collective failed (a replica was lost):
/// the shard tells the trainer and stays alive, its parameters those of its
/// last update, so recovery can salvage them (salvage_atom).
void step_failed(shard_actor* self, const std::string& what, const std::string& why) {
  auto& st = self->state;
  if (st.broken)
    return;
  st.broken = true;
  if (st.trainer)
    self->send(st.trainer, actors::step_failed_atom::value, st.label + ": " + what + ": " + why);
  else
    fail(self, what + ": " + why);
}

void step_failed(shard_actor* self, const std::string& what, const caf::error& err) {
  step_failed(self, what, self->system().render(err));
}

// -- the end of a step ---------------------------------------------------------

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
  // A shared reduction's sums are in place once its gather has run: the
  // optimizer follows it in the same chain, no hand-off in between.
  const bool shared = data_parallel && st.compute->buckets.shared;
  if (data_parallel && !st.allreduce.flush_requested) {
    st.allreduce.flush_requested = true;
    chain.push_back(flush_buckets_work(st.compute, caf::actor_cast<caf::actor>(self), st.step->step,
                                       st.step->lr));
    if (shared)
      chain.push_back(gather_sums_work(st.compute, st.step->step));
  }
  const bool reduced = !data_parallel || shared || st.allreduce.complete();
  const bool clipping = st.cfg.clip_norm > 0;
  if (reduced && clipping && !st.end.norm_requested) {
    st.end.norm_requested = true;
    chain.push_back(traced_update(st.compute, grad_norm_work(st.compute, st.allreduce.take()),
                                  "grad norm", *st.step));
  } else if (reduced && !st.end.optimizer_done && (!clipping || st.end.clip_total)) {
    st.end.optimizer_done = true;
    auto work = optimizer_work(st.compute, st.allreduce.take(), st.step->lr, st.cfg.clip_norm,
                               st.end.clip_total, st.step->step);
    chain.push_back(traced_update(st.compute, std::move(work), "optimizer", *st.step));
  }
  return chain;
}

/// A step begins: its whole action list, and the end-of-step work that can
/// be decided now, go to the device as one run. It starts at once if the
/// first action's inputs are here, else it is parked from the start and the
/// input that completes them resumes it.
void start_run(shard_actor* self, std::vector<action> actions) {
  auto& st = self->state;
  auto r = make_step_run(*st.compute, *st.step, std::move(actions),
                         caf::actor_cast<caf::actor>(self), st.prev, st.next);
  r->prev_local = st.prev_local;
  r->next_local = st.next_local;
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
      r->idle_since = st.trace.step_began; // the trace's wait starts with the step
      c.in.waiting_for = r->actions.front();
      c.in.parked_run = r;
    }
  }
  st.run = r;
  st.busy = true;
  if (go)
    resume_device(st.compute, std::move(r), st.trace.handoff_begins(*st.step));
}

/// Parameter servers, at the end of a step's actions: push the gradients and
/// ask for the next step's parameters (ps_worker::push).
void push_to_ps(shard_actor* self) {
  auto& st = self->state;
  try {
    if (!st.ps.push(*st.compute, *st.step, st.cfg.ps, st.trace.recorder))
      return; // the pulled parameters come as ps_msg
  } catch (const std::exception& e) {
    fail(self, e.what());
    return;
  }
  note_digest(st, after_update(*st.compute, st.step->step));
  st.end.optimizer_done = true;
}

/// Every ps shard answered: the next step's parameters go in place.
void apply_pulled(shard_actor* self) {
  auto& st = self->state;
  try {
    note_digest(st, st.ps.apply(*st.compute, *st.step, st.report, st.trace.recorder));
  } catch (const std::exception& e) {
    fail(self, e.what());
    return;
  }
  st.end.optimizer_done = true;
}

/// After the device finished the run or a task, or an all-reduce or the
/// clipping total came back (or the parameter servers answered): the rest
/// of the step's end, then its report.
void advance(shard_actor* self) {
  auto& st = self->state;
  if (st.busy || !st.step)
    return;
  if (st.cfg.uses_ps() && st.step->training && !st.end.optimizer_done) {
    if (!st.ps.pushed)
      push_to_ps(self);
    else if (st.ps.client.ready())
      apply_pulled(self);
    if (!st.end.optimizer_done)
      return; // the pulled parameters come as ps_msg
  }
  auto chain = end_of_step_work(self);
  if (!chain.empty()) {
    submit(self, std::move(chain));
    return;
  }
  if (!st.step->training || st.end.optimizer_done)
    finish_step(self);
}

// -- message handlers ----------------------------------------------------------

/// Fault injection (recovery tests): at cfg.exit_step the actor exits; at
/// cfg.cut_step its node's data-plane connections are cut; at cfg.hang_step
/// it stops answering anything, alive but silent (its mailbox keeps every
/// message unread). True when the step must not run.
bool injected_fault(shard_actor* self, std::int64_t step) {
  const auto& c = self->state.cfg;
  if (step == c.exit_step) {
    self->quit(
        caf::make_error(caf::sec::runtime_error,
                        self->state.label + ": injected exit at step " + std::to_string(step)));
    return true;
  }
  if (step == c.cut_step && c.courier) {
    runtime::logger("layer_shard")
        ->warn("{}: injected cut of the data plane at step {}", self->state.label, step);
    c.courier->cut_peer("");
  }
  if (step != c.hang_step)
    return false;
  runtime::logger("layer_shard")->warn("{}: injected hang at step {}", self->state.label, step);
  self->set_default_handler(caf::skip);
  self->become([](actors::abort_atom, std::int64_t) {}); // a message no one sends
  return true;
}

void on_step(shard_actor* self, actors::step_msg& m) {
  auto& s = self->state;
  s.trace.step_begin(); // the span starts as the step_msg is handled
  if (s.step) {
    fail(self, "step " + std::to_string(m.step) + " began before step " +
                   std::to_string(s.step->step) + " ended");
    return;
  }
  if (m.training && injected_fault(self, m.step))
    return;
  const int chunks = s.cfg.virtual_stages();
  // A data-parallel replica whose share of a short last batch is empty
  // has no micro-batches: it only joins the all-reduce.
  std::vector<action> actions;
  if (m.microbatches > 0)
    actions = m.training
                  ? make_schedule(s.cfg.schedule, s.cfg.stages, s.cfg.stage, m.microbatches, chunks)
                  : forward_only_schedule(m.microbatches, s.cfg.stages, chunks);
  // With a shared reduction the device thread all-reduces (gather_sums_work).
  s.allreduce.begin_step(s.compute->buckets.shared ? 0 : s.compute->buckets.buckets.size());
  // Whoever starts a step gets its report (the trainer).
  s.trainer = caf::actor_cast<caf::actor>(self->current_sender());
  s.step = m;
  s.end = {};
  s.report = {};
  s.ps.begin_step();
  start_run(self, std::move(actions));
  s.trace.idle(!s.busy && s.step, s.trace.step_began);
}

/// Answers the salvage requests waiting for an update to end.
void answer_salvage(shard_actor* self) {
  auto& s = self->state;
  for (auto& rp : s.salvage_waiting)
    rp.deliver(collect_params(*s.compute), collect_optimizer_state(*s.compute));
  s.salvage_waiting.clear();
}

void on_task_done(shard_actor* self, task_done& d) {
  auto& s = self->state;
  s.busy = false;
  answer_salvage(self);
  s.trace.recorder.absorb(s.compute->trace);
  if (s.step)
    s.trace.task_done(d.sent_at, s.step->step);
  s.report.loss_sum += d.loss_sum;
  s.report.correct += d.correct;
  s.report.samples += d.samples;
  s.report.compute_seconds += d.seconds;
  s.report.messages_sent += d.messages_sent;
  s.report.bytes_sent += d.bytes_sent;
  s.report.tokens += d.tokens;
  s.report.abs_error_sum += d.abs_error_sum;
  s.report.outputs.insert(s.report.outputs.end(), d.outputs.begin(), d.outputs.end());
  s.report.output_offsets.insert(s.report.output_offsets.end(), d.output_offsets.begin(),
                                 d.output_offsets.end());
  s.report.buckets += d.buckets;
  s.report.allreduce_bytes += d.allreduce_bytes;
  s.report.updates_in_reduction += d.updates_in_reduction;
  if (d.allreduce_seconds)
    s.report.allreduce_seconds = *d.allreduce_seconds;
  s.ps.step_samples += d.forward_samples;
  s.report.peak_in_flight = std::max(s.report.peak_in_flight, d.peak_in_flight);
  note_digest(s, d.digest);
  if (d.grad_sumsq) {
    s.report.grad_sumsq = *d.grad_sumsq;
    self->send(s.trainer, actors::grad_sumsq_atom::value, s.step->step,
               static_cast<std::int32_t>(s.cfg.grid().index(s.cfg.slot())), *d.grad_sumsq);
  }
  s.report.peak_saved_bytes = std::max<std::uint64_t>(
      {s.report.peak_saved_bytes, d.peak_saved_bytes, s.compute->saved_bytes()});
  advance(self);
  s.trace.idle(!s.busy && s.step);
}

/// The device's work threw: the shard fails, unless only the step's shared
/// reduction was aborted (a replica ended), which fails the step as a failed
/// all-reduce does; the parameters are those of the last update (the update
/// runs after the gather), so recovery can salvage them.
void on_task_failed(shard_actor* self, task_failed& f) {
  auto& s = self->state;
  if (!f.collective) {
    fail(self, f.what);
    return;
  }
  s.busy = false;
  // The trainer hears of the failure before any salvage answer, so that the
  // supervisor counts it with the failure it is recovering from.
  step_failed(self, "gradient all-reduce failed", f.what);
  answer_salvage(self);
}

/// False (and the shard fails) for a message addressed to a chunk it does not hold.
bool known_chunk(shard_actor* self, const char* what, std::int32_t chunk) {
  if (chunk >= 0 && chunk < self->state.cfg.virtual_stages())
    return true;
  fail(self, std::string{what} + " for chunk " + std::to_string(chunk) + ", but it holds " +
                 std::to_string(self->state.cfg.virtual_stages()));
  return false;
}

bool on_ps_group(shard_actor* self, std::vector<caf::actor>& shards) {
  auto& s = self->state;
  if (!s.cfg.uses_ps()) {
    fail(self, "given parameter servers, but it was not configured for them");
    return false;
  }
  try {
    s.ps.wire(s.cfg, std::move(shards), caf::actor_cast<caf::actor>(self));
  } catch (const std::exception& e) {
    fail(self, e.what());
    return false;
  }
  return true;
}

void on_ps_params(shard_actor* self, actors::ps_msg& m) {
  auto& s = self->state;
  if (!s.step || !s.ps.pushed || s.end.optimizer_done) {
    fail(self, "parameters from ps shard " + std::to_string(m.shard) + " for step " +
                   std::to_string(m.step) + " outside a pull");
    return;
  }
  try {
    if (!s.ps.receive(std::move(m)))
      return;
  } catch (const std::exception& e) {
    fail(self, e.what());
    return;
  }
  advance(self);
}

void on_clip(shard_actor* self, std::int64_t step, double total) {
  auto& s = self->state;
  s.trace.input("clip", step, -1);
  if (!s.step || s.step->step != step || !s.end.norm_requested || s.busy || s.end.clip_total) {
    fail(self, "clip for step " + std::to_string(step) +
                   " before this shard reported its gradients' sum of squares");
    return;
  }
  s.end.clip_total = total;
  advance(self);
}

/// Parameters, optimizer state and the trace are only read or replaced
/// between steps, when no device task can be touching them: the error to
/// answer with otherwise.
caf::error between_steps(shard_actor* self, const char* what) {
  if (self->state.busy || self->state.step)
    return caf::make_error(caf::sec::runtime_error,
                           self->state.label + ": " + what + " while a step is running");
  return caf::none;
}

/// Runs `load` on the compute state between steps; its exception becomes
/// the answer's error.
template <class F>
caf::result<bool> load_between_steps(shard_actor* self, const char* what, F load) {
  if (auto err = between_steps(self, what))
    return err;
  try {
    load(*self->state.compute);
  } catch (const std::exception& e) {
    return caf::make_error(caf::sec::invalid_argument, self->state.label + ": " + e.what());
  }
  return true;
}

/// What the shard is doing, for a stall report: its step, whether the device
/// runs, and what it waits for (an input, the all-reduce, the trainer's
/// clipping total, the parameter servers).
nlohmann::json doing(shard_state& s) {
  nlohmann::json j{{"actor", s.label}};
  if (!s.step) {
    j["action"] = "idle (between steps)";
    return j;
  }
  j["step"] = s.step->step;
  auto& c = *s.compute;
  std::optional<action> parked;
  {
    std::lock_guard lock{c.in.mutex};
    if (!c.in.parked_run.expired())
      parked = c.in.waiting_for;
  }
  if (parked) {
    const bool fwd = parked->what == action::kind::forward;
    j["action"] =
        std::string{fwd ? "forward" : "backward"} + " of micro-batch " + std::to_string(parked->mb);
    j["waits_for"] =
        fwd ? (s.cfg.takes_input(parked->chunk)
                   ? "its input of micro-batch " + std::to_string(parked->mb) + " from the trainer"
                   : "the activation of micro-batch " + std::to_string(parked->mb) +
                         " from stage " + std::to_string(s.cfg.prev_of(parked->chunk).stage))
            : "the gradient of micro-batch " + std::to_string(parked->mb) + " from stage " +
                  std::to_string(s.cfg.owns_loss(parked->chunk)
                                     ? s.cfg.stage
                                     : s.cfg.next_of(parked->chunk).stage) +
                  " (or its labels)";
  } else if (s.busy && c.buckets.gathering) {
    j["action"] = "all-reduce";
    j["waits_for"] = "the other replicas' gradient buckets (shared reduction in this process)";
  } else if (s.busy) {
    j["action"] = "computing on its device";
  } else if (s.cfg.all_reduces() && !s.allreduce.complete()) {
    j["action"] = "all-reduce";
    j["waits_for"] = "the all-reduce of " +
                     std::to_string(s.allreduce.expected - s.allreduce.done) +
                     " gradient bucket(s) with the other replicas";
  } else if (s.cfg.clip_norm > 0 && s.end.norm_requested && !s.end.clip_total) {
    j["action"] = "clipping";
    j["waits_for"] = "the trainer's global gradient norm";
  } else if (s.cfg.uses_ps() && !s.end.optimizer_done) {
    j["action"] = "parameter-server exchange";
    j["waits_for"] = "the parameter servers' answer";
  } else {
    j["action"] = "ending the step";
  }
  return j;
}

/// (wire_atom, device, prev, next): answers true once the neighbours that
/// run in this process have handed over their compute state, so that from
/// the first step this shard's device delivers straight into their inbox.
caf::result<bool> wire(shard_actor* self, caf::actor device, caf::actor prev, caf::actor next) {
  auto& s = self->state;
  s.device = device;
  {
    std::lock_guard lock{s.compute->in.mutex};
    s.compute->in.device = std::move(device);
  }
  s.prev = std::move(prev);
  s.next = std::move(next);
  auto in_process = [self](const caf::actor& a) { return a && a.node() == self->node(); };
  std::vector<std::weak_ptr<compute_state> shard_state::*> asks;
  std::vector<caf::actor> whom;
  if (in_process(s.prev)) {
    asks.push_back(&shard_state::prev_local);
    whom.push_back(s.prev);
  }
  if (in_process(s.next)) {
    asks.push_back(&shard_state::next_local);
    whom.push_back(s.next);
  }
  if (asks.empty())
    return true;
  auto rp = self->make_response_promise<bool>();
  auto left = std::make_shared<std::size_t>(asks.size());
  for (std::size_t i = 0; i < asks.size(); ++i)
    self->request(whom[i], std::chrono::seconds(30), inbox_atom::value)
        .then(
            [self, rp, left, field = asks[i]](local_inbox& in) mutable {
              self->state.*field = std::move(in.state);
              if (--*left == 0)
                rp.deliver(true);
            },
            [self, rp](caf::error& e) mutable {
              rp.deliver(false);
              fail(self, "wiring: a neighbour in this process did not hand over its inbox: " +
                             self->system().render(e));
            });
  return rp;
}

/// Messages between steps: wiring, groups, parameters, state and the trace.
caf::message_handler setup_handlers(shard_actor* self) {
  return {
      [self](actors::wire_atom, caf::actor device, caf::actor prev, caf::actor next) {
        return wire(self, std::move(device), std::move(prev), std::move(next));
      },
      [self](inbox_atom) { return local_inbox{self->state.compute}; },
      [self](actors::dp_group_atom, caf::actor group, bool devices_own) {
        return join_dp_group(self, group, devices_own);
      },
      [self](actors::ps_group_atom, std::vector<caf::actor>& shards) {
        return on_ps_group(self, shards);
      },
      [self](actors::tp_group_atom, caf::actor rank) {
        auto& s = self->state;
        if (!s.compute->tp) {
          fail(self, "given a tensor-parallel rank, but it holds no tensor-parallel layers");
          return false;
        }
        s.compute->tp->set_rank_actor(std::move(rank));
        return true;
      },
      [self](actors::sync_params_atom) -> caf::result<bool> {
        if (auto err = between_steps(self, "synchronising parameters"))
          return err;
        return sync_params(self);
      },
      [self](actors::get_params_atom) -> caf::result<runtime::named_tensors> {
        if (auto err = between_steps(self, "reading parameters"))
          return err;
        return collect_params(*self->state.compute);
      },
      [self](actors::set_params_atom, runtime::named_tensors& in) {
        return load_between_steps(self, "loading parameters",
                                  [&](compute_state& c) { load_params(c, in); });
      },
      [self](actors::get_trace_atom) -> caf::result<std::string> {
        if (auto err = between_steps(self, "reading the trace"))
          return err;
        return self->state.trace.recorder.to_json().dump();
      },
      [self](actors::salvage_atom) -> caf::result<runtime::named_tensors, runtime::named_tensors> {
        // Mid-step the parameters are those of the last update until the
        // optimizer runs (it is the only writer); while it may run, wait. Where
        // the update is folded into the backward (folds_optimizer: one
        // replica, no ps, so recovery never salvages it) a step under way
        // may have updated some layers and not others: refuse.
        auto& s = self->state;
        if (s.step && s.step->training && folds_optimizer(s.cfg))
          return caf::make_error(caf::sec::runtime_error,
                                 fmt::format("{}: step {} updates the parameters inside its "
                                             "backward; no consistent mid-step state",
                                             s.label, s.step->step));
        if (s.busy && s.step && s.end.optimizer_done) {
          // A device waiting in the shared reduction has not begun the
          // update, nor can it while the lock is held: answer now (a hung
          // replica would keep it waiting).
          auto& c = *s.compute;
          std::unique_lock lock{c.update_mutex, std::try_to_lock};
          if (lock.owns_lock() && c.buckets.gathering)
            return {collect_params(c), collect_optimizer_state(c)};
          s.salvage_waiting.push_back(
              self->make_response_promise<runtime::named_tensors, runtime::named_tensors>());
          return s.salvage_waiting.back();
        }
        return {collect_params(*s.compute), collect_optimizer_state(*s.compute)};
      },
      [self](actors::doing_atom) { return doing(self->state).dump(); },
      [self](actors::get_state_atom) -> caf::result<runtime::named_tensors> {
        if (auto err = between_steps(self, "reading optimizer state"))
          return err;
        return collect_optimizer_state(*self->state.compute);
      },
      [self](actors::set_state_atom, runtime::named_tensors& in) {
        return load_between_steps(self, "loading optimizer state",
                                  [&](compute_state& c) { load_optimizer_state(c, in); });
      },
  };
}

/// Messages of a step: its start, inputs, device results, collectives.
caf::message_handler step_handlers(shard_actor* self) {
  return {
      [self](actors::step_msg& m) { on_step(self, m); },
      [self](actors::activation_msg& m) {
        self->state.trace.input("activation", m.step, m.mb, m.chunk);
        if (!known_chunk(self, "activation", m.chunk))
          return;
        const input_key k{m.step, m.mb, m.chunk};
        store_input(self, &inbox::activations, k, std::move(m));
      },
      [self](actors::gradient_msg& m) {
        self->state.trace.input("gradient", m.step, m.mb, m.chunk);
        if (!known_chunk(self, "gradient", m.chunk))
          return;
        store_input(self, &inbox::grads, input_key{m.step, m.mb, m.chunk}, std::move(m.data));
      },
      [self](actors::labels_msg& m) {
        self->state.trace.input("labels", m.step, m.mb);
        const input_key k{m.step, m.mb, self->state.cfg.loss_chunk()};
        store_input(self, &inbox::labels, k, std::move(m.labels));
      },
      [self](task_done& d) { on_task_done(self, d); },
      [self](task_failed& f) { on_task_failed(self, f); },
      [self](bucket_ready& b) { start_allreduce(self, b); },
      [self](actors::ps_msg& m) { on_ps_params(self, m); },
      [self](actors::clip_atom, std::int64_t step, double total) { on_clip(self, step, total); },
  };
}

caf::behavior layer_shard(shard_actor* self, shard_config cfg) {
  auto& st = self->state;
  st.cfg = std::move(cfg);
  st.label = "layer_shard " + st.cfg.grid().name(st.cfg.slot());
  try {
    st.compute = make_compute_state(self->system(), st.cfg);
  } catch (const std::exception& e) {
    fail(self, e.what());
    return {};
  }
  if (st.cfg.trace) // track 0 of a process is the trainer's
    st.trace.recorder = st.compute->trace =
        runtime::trace_recorder{static_cast<std::int64_t>(st.cfg.grid().index(st.cfg.slot())) + 1};
  return step_handlers(self).or_else(setup_handlers(self));
}

} // namespace detail

caf::actor spawn_layer_shard(caf::actor_system& sys, shard_config cfg) {
  return sys.spawn(detail::layer_shard, std::move(cfg));
}

} // namespace troupe::actors
