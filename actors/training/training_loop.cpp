#include "actors/training/training_loop.hpp"

#include <cmath>
#include <string>
#include <utility>

#include "actors/training/async_workers.hpp"
#include "actors/training/checkpoint.hpp"
#include "actors/training/evaluation.hpp"
#include "actors/training/model_gather.hpp"
#include "actors/training/progress.hpp"
#include "actors/training/rebalancing.hpp"
#include "actors/training/replica_checks.hpp"
#include "actors/training/report.hpp"
#include "actors/training/snapshots.hpp"
#include "actors/training/step_dispatch.hpp"

namespace troupe::actors::training {

namespace {

/// The end of the run: the trace, the ps counters, the last checkpoint, then
/// (job_done_atom, report, parameters) to report_to; each step runs once and
/// comes back here.
void finish(trainer_actor* self) {
  auto& st = self->state;
  if (!st.cfg.opts.trace_file.empty() && !st.totals.trace_written) {
    write_trace(self, [self] { finish(self); });
    return;
  }
  if (!st.cfg.ps_shards.empty() && !st.totals.ps_stats) {
    gather_ps_stats(self, [self] { finish(self); });
    return;
  }
  auto deliver = [self] {
    collect_model(self, false, [self](model_state m) {
      auto& s = self->state;
      self->send(s.cfg.report_to, job_done_atom::value, make_report(s).dump(), to_named(m.params));
      self->quit();
    });
  };
  if (!st.cfg.opts.checkpoint_dir.empty())
    write_checkpoint(self, deliver);
  else
    deliver();
}

/// Every replica's loader sent its part of the batch: they must agree on
/// where they are; then the step starts on every replica.
void batches_arrived(trainer_actor* self) {
  auto& st = self->state;
  const auto& first = st.current.batches.front();
  for (const auto& other : st.current.batches)
    if (other.epoch != first.epoch || other.index != first.index) {
      fail(self, "replica loaders out of step: batch " + std::to_string(other.index) +
                     " of epoch " + std::to_string(other.epoch) + " next to batch " +
                     std::to_string(first.index) + " of epoch " + std::to_string(first.epoch));
      return;
    }
  st.totals.trace.complete_until_now("wait batch", "wait", st.current.started, {{"step", st.step}});
  st.epoch.index = first.epoch;
  st.epoch.batch = first.index;
  start_epoch_clock(st, first.epoch, first.index);
  send_steps(self, st.current.batches, st.step, true);
}

/// The epoch's end after its evaluation: logs it, resets the epoch's sums,
/// writes a checkpoint when asked, and goes on.
void after_epoch(trainer_actor* self) {
  auto& st = self->state;
  st.totals.epoch_log.push_back({{"epoch", st.epoch.index + 1},
                                 {"train_loss", st.epoch.last_loss},
                                 {"test_accuracy", st.eval.test_accuracy},
                                 {"test_loss", st.eval.test_loss}});
  if (st.language_model) {
    st.totals.epoch_log.back()["test_accuracy"] = nullptr;
    st.totals.epoch_log.back()["bits_per_char"] = st.eval.bits_per_char;
  } else if (st.cfg.opts.loss == loss_kind::mse) {
    st.totals.epoch_log.back()["test_accuracy"] = nullptr;
    st.totals.epoch_log.back()["test_mse"] = st.eval.test_loss;
    st.totals.epoch_log.back()["test_mae"] = st.eval.test_mae;
  }
  print_epoch_summary(st);
  tell_epoch_result(self);
  st.epoch.loss_sum = 0;
  st.epoch.samples = 0;
  st.epoch.tokens = 0;
  st.epoch.run_samples = 0;
  if (!st.cfg.opts.checkpoint_dir.empty() && st.step < st.total_steps)
    write_checkpoint(self, [self] { start_step(self); });
  else
    start_step(self);
}

void epoch_done(trainer_actor* self) {
  auto& st = self->state;
  st.epoch.last_loss = st.epoch.mean_loss();
  if (st.cfg.opts.evaluate)
    start_eval(self, [self] { after_epoch(self); });
  else
    after_epoch(self);
}

/// Adds the finished step's losses and time to the epoch and the run.
/// Returns the step's duration.
double record_step(trainer_state& st) {
  const auto& loss = st.current.loss;
  const bool timed = st.step - st.run_start_step >= st.cfg.opts.timing_warmup;
  st.epoch.loss_sum += loss.loss_sum;
  st.epoch.samples += loss.samples;
  st.epoch.tokens += loss.tokens;
  st.epoch.run_samples += loss.samples;
  st.totals.samples += loss.samples;
  const double step_seconds = seconds_between(st.current.started, clock_type::now());
  st.totals.trace.complete_until_now("step", "step", st.current.started,
                                     {{"step", st.step}, {"epoch", st.epoch.index}});
  if (independent_workers(st)) // the next step's time runs from here
    st.current.started = clock_type::now();
  st.totals.train_seconds += step_seconds;
  if (timed) {
    st.totals.timed_seconds += step_seconds;
    ++st.totals.timed_steps;
  }
  ++st.step;
  return step_seconds;
}

/// The finished step's figures for the report's step series (after
/// record_step: st.step counts it, as evaluations and restarts do): each stage's
/// compute is the mean over its replicas and tensor-parallel ranks (async
/// workers' steps overlap, so they leave it out).
step_sample step_figures(const trainer_state& st, double step_seconds) {
  const auto& loss = st.current.loss;
  step_sample s{st.step,      loss.loss_sum,
                loss.tokens,  loss.correct,
                loss.samples, static_cast<double>(learning_rate(st, st.step - 1)),
                step_seconds, {}};
  const auto& g = st.grid;
  if (independent_workers(st) || st.current.compute.size() < g.size())
    return s;
  s.stage_compute.assign(static_cast<std::size_t>(g.depth), 0.0);
  for (int r = 0; r < g.replicas; ++r)
    for (int k = 0; k < g.depth; ++k)
      for (int t = 0; t < g.tp; ++t)
        s.stage_compute[static_cast<std::size_t>(k)] += st.current.compute.at(g.index({r, k, t}));
  for (double& x : s.stage_compute)
    x /= static_cast<double>(g.replicas * g.tp);
  return s;
}

/// Adds a loss stage's report to the losses of the step it belongs to.
void add_loss(trainer_state& st, const actors::stage_report& r, bool independent) {
  auto& sum = independent ? worker_loss(st, r.replica) : st.current.loss;
  sum.loss_sum += r.loss_sum;
  sum.correct += r.correct;
  sum.samples += r.samples;
  sum.tokens += r.tokens;
  sum.abs_error_sum += r.abs_error_sum;
}

} // namespace

void start_step(trainer_actor* self) {
  auto& st = self->state;
  if (st.step >= st.total_steps) {
    finish(self);
    return;
  }
  // Async workers have no common step boundary: they ignore an interrupt.
  if (st.cfg.interrupt && *st.cfg.interrupt && !independent_workers(st)) {
    st.totals.interrupted = true;
    finish(self);
    return;
  }
  if (at_step_boundary(self))
    return; // paused for a re-plan
  if (independent_workers(st)) {
    async_start_step(self);
    return;
  }
  st.current.started = clock_type::now();
  // Each replica's loader prepares that replica's part of the batch.
  const auto& loaders = st.cfg.train_loaders;
  st.current.batches.assign(loaders.size(), {});
  st.current.batches_pending = loaders.size();
  for (std::size_t r = 0; r < loaders.size(); ++r)
    fetch_batch(self, loaders[r], static_cast<int>(r), st.step, true,
                [self, r](actors::batch_msg& b) {
                  auto& cur = self->state.current;
                  cur.batches[r] = std::move(b);
                  if (--cur.batches_pending == 0)
                    batches_arrived(self);
                });
}

void start_epoch_clock(trainer_state& st, std::int64_t epoch, std::int64_t batch) {
  if (batch != 0 && st.epoch.run_samples != 0)
    return;
  st.epoch.started = clock_type::now();
  st.progress.start(static_cast<int>(epoch + 1), st.cfg.opts.epochs, st.steps_per_epoch);
}

void step_completed(trainer_actor* self) {
  auto& st = self->state;
  if (st.grid.replicas > 1 && st.cfg.opts.check_replicas > 0 &&
      (st.step + 1) % st.cfg.opts.check_replicas == 0) {
    if (auto why = check_digests(st, st.step); !why.empty()) {
      fail(self, why);
      return;
    }
    ++st.totals.replica_checks;
  }
  const auto samples = st.current.loss.samples;
  const double step_seconds = record_step(st);
  st.totals.series.add(step_figures(st, step_seconds));
  observe_step(self, step_seconds);
  const bool epoch_end = st.epoch.batch + 1 == st.steps_per_epoch;
  show_step_progress(self, step_seconds, samples, epoch_end);
  if (epoch_end)
    epoch_done(self);
  else if (eval_due(st))
    final_eval(self, [self] { start_step(self); });
  else
    start_step(self);
}

void on_report(trainer_actor* self, actors::stage_report& r) {
  auto& st = self->state;
  const auto& g = st.grid;
  if (r.stage < 0 || r.stage >= g.depth || r.replica < 0 || r.replica >= g.replicas ||
      r.tp_rank < 0 || r.tp_rank >= g.tp) {
    fail(self, "report from an unknown stage " + std::to_string(r.stage) + " of replica " +
                   std::to_string(r.replica) + " (tensor-parallel rank " +
                   std::to_string(r.tp_rank) + ")");
    return;
  }
  const auto index = g.index({r.replica, r.stage, r.tp_rank});
  const bool evaluating = st.eval.running;
  const bool independent = independent_workers(st) && !evaluating;
  // A replica's loss: add them up (its tensor-parallel ranks all computed
  // the same one), from the stage holding the loss chunk.
  if (r.stage == actors::loss_stage(st.cfg.opts.schedule, g.depth) && r.tp_rank == 0) {
    add_loss(st, r, independent);
    if (evaluating && r.replica == 0)
      store_outputs(st, r);
  }
  if (r.has_digest)
    st.current.digests[index] = r.params_digest;
  if (index < st.current.reported.size())
    st.current.reported[index] = true;
  if (index < st.current.compute.size())
    st.current.compute[index] = r.compute_seconds;
  if (!evaluating) {
    const bool timed = st.step - st.run_start_step >= st.cfg.opts.timing_warmup;
    st.totals.compute_seconds += r.compute_seconds;
    st.totals.timed_compute_seconds += timed ? r.compute_seconds : 0.0;
    add_to_totals(st, index, r);
  }
  if (independent) {
    worker_step_done(self, r.replica);
    return;
  }
  if (--st.current.reports_pending > 0)
    return;
  if (evaluating)
    eval_step_done(self);
  else
    step_completed(self);
}

void on_grad_sumsq(trainer_actor* self, std::int64_t step, std::int32_t stage, double sumsq) {
  auto& st = self->state;
  auto& cur = st.current;
  const auto i = static_cast<std::size_t>(stage);
  if (st.eval.running || step != st.step || stage < 0 || i >= cur.grad_sumsq.size() ||
      cur.grad_sumsq[i]) {
    fail(self, "unexpected gradient norm from stage " + std::to_string(stage) + " for step " +
                   std::to_string(step));
    return;
  }
  cur.grad_sumsq[i] = sumsq;
  if (--cur.sumsq_pending > 0)
    return;
  if (auto why = check_grad_sumsq(st, step); !why.empty()) {
    fail(self, why);
    return;
  }
  // Replica 0's shards hold the whole gradient (every replica holds the same
  // all-reduced sum); a stage's tensor-parallel ranks each counted their
  // slices (rank 0 the replicated parameters too).
  double total = 0;
  for (std::size_t k = 0; k < static_cast<std::size_t>(st.grid.depth * st.grid.tp); ++k)
    total += *cur.grad_sumsq[k];
  st.totals.grad_norm = std::sqrt(total);
  for (const auto& s : st.cfg.stages)
    self->send(s, actors::clip_atom::value, step, total);
}

} // namespace troupe::actors::training
