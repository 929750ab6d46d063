#include "actors/training/trainer.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <utility>

#include "actors/pipeline/data_loader.hpp"
#include "actors/training/checkpoint.hpp"
#include "actors/training/evaluation.hpp"
#include "actors/training/rebalancing.hpp"
#include "actors/training/snapshots.hpp"
#include "actors/training/trainer_state.hpp"
#include "actors/training/training_loop.hpp"
#include "models/train/sequence_loss.hpp"

namespace troupe::actors {

namespace training {

void fail(trainer_actor* self, const std::string& what) {
  self->quit(caf::make_error(caf::sec::runtime_error, "trainer: " + what));
}

bool independent_workers(const trainer_state& st) {
  return !st.cfg.ps_shards.empty() && st.cfg.topology.ps_mode != ps_mode::sync;
}

std::vector<caf::actor> first_replica(const trainer_state& st) {
  const auto per_replica = static_cast<std::ptrdiff_t>(st.grid.depth * st.grid.tp);
  return {st.cfg.stages.begin(), st.cfg.stages.begin() + per_replica};
}

float learning_rate(const trainer_state& st, std::int64_t step) {
  return st.schedule ? st.schedule->lr_at(step) : st.cfg.opts.lr;
}

} // namespace training

namespace {

using namespace training;

/// Data parallelism: every replica takes replica 0's parameters before the
/// first step (a broadcast per stage), then training starts.
void sync_replicas(trainer_actor* self) {
  if (self->state.grid.replicas == 1) {
    start_step(self);
    return;
  }
  gather<bool>(
      self, self->state.cfg.stages, [self](std::vector<bool>) { start_step(self); },
      actors::sync_params_atom::value);
}

/// The learning-rate schedule of opts: cosine, or constant after a warm-up
/// (a "cosine" from lr down to lr), or none. Throws std::invalid_argument.
std::optional<models::lr_schedule> make_schedule(const train_options& o, std::int64_t steps) {
  if (o.lr_schedule != "cosine" && o.warmup_steps <= 0)
    return std::nullopt;
  return models::lr_schedule{models::lr_schedule_config{
      o.lr, o.warmup_steps, steps, o.lr_schedule == "cosine" ? o.lr / 10 : o.lr}};
}

caf::behavior trainer(trainer_actor* self, trainer_config cfg) {
  auto& st = self->state;
  st.cfg = std::move(cfg);
  const auto& o = st.cfg.opts;
  st.grid = st.cfg.topology.grid();
  st.steps_per_epoch = batches_per_epoch(st.cfg.train_samples, o.batch);
  st.total_steps = total_training_steps(o, st.cfg.train_samples);
  st.language_model = models::is_sequence_model(st.cfg.topology.model);
  st.async.workers.assign(static_cast<std::size_t>(st.grid.replicas), {});
  if (st.grid.tp > 1)
    st.tp_layout = models::tp_layout(st.cfg.topology.model, st.grid.tp);
  try {
    st.schedule = make_schedule(o, st.total_steps);
  } catch (const std::invalid_argument& e) {
    fail(self, std::string{"--lr-schedule: "} + e.what());
    return {};
  }
  if (!o.trace_file.empty())
    st.totals.trace = runtime::trace_recorder{0};
  init_snapshots(st);
  init_rebalancing(st);
  if (o.evaluate_only)
    evaluate_checkpoint(self);
  else if (st.cfg.resume)
    resume(self, [self] { sync_replicas(self); });
  else
    sync_replicas(self);
  return {
      [self](actors::stage_report& r) { on_report(self, r); },
      [self](actors::grad_sumsq_atom, std::int64_t step, std::int32_t stage, double sumsq) {
        on_grad_sumsq(self, step, stage, sumsq);
      },
      // Recovery (snapshots.hpp).
      [self](snapshot_atom) {
        auto rp = self->make_response_promise<job_snapshot>();
        pause_for_snapshot(self, rp);
        return rp;
      },
      [self](actors::salvage_atom, std::vector<caf::actor>& lost) {
        auto rp = self->make_response_promise<job_snapshot>();
        salvage(self, std::move(lost), rp);
        return rp;
      },
      [self](checkpointed_atom, std::int64_t step, std::string& error) {
        on_checkpointed(self, step, error);
      },
      [self](actors::doing_atom) { return trainer_doing(self->state).dump(); },
      [self](actors::step_failed_atom, std::string& what) {
        auto& st = self->state;
        if (st.cfg.opts.max_restarts == 0)
          fail(self, what);
        else // the supervisor recovers; the shards keep their state until then
          self->send(st.cfg.report_to, actors::step_failed_atom::value, what);
      },
  };
}

} // namespace

std::int64_t total_training_steps(const train_options& opts, std::int64_t train_samples) {
  auto steps = batches_per_epoch(train_samples, opts.batch) * opts.epochs;
  return opts.max_steps > 0 ? std::min(steps, opts.max_steps) : steps;
}

caf::actor spawn_trainer(caf::actor_system& sys, trainer_config cfg) {
  return sys.spawn(trainer, std::move(cfg));
}

} // namespace troupe::actors
