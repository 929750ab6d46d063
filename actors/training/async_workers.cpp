#include "actors/training/async_workers.hpp"

#include <algorithm>
#include <string>

#include "actors/training/step_dispatch.hpp"
#include "actors/training/training_loop.hpp"

namespace troupe::actors::training {

namespace {

worker_progress& worker(trainer_state& st, int replica) {
  return st.async.workers[static_cast<std::size_t>(replica)];
}

/// A worker's batch arrived: it must be the share its part names.
void worker_batch(trainer_actor* self, int replica, actors::batch_msg& b) {
  auto& st = self->state;
  auto& w = worker(st, replica);
  const auto global_step = w.part / st.grid.replicas;
  if (b.epoch * st.steps_per_epoch + b.index != global_step) {
    fail(self, "loader " + std::to_string(w.part % st.grid.replicas) + " is out of step: batch " +
                   std::to_string(b.index) + " of epoch " + std::to_string(b.epoch) + " for step " +
                   std::to_string(global_step));
    return;
  }
  w.pending = st.grid.depth * st.grid.tp;
  send_step(self, replica, b, w.next, true, global_step);
}

/// Worker `replica`, unless it is running a step, takes the next part of the
/// epoch's batches, part p being share p % W of global batch p / W (from
/// that share's loader). Async workers take whichever part is next: a fast
/// worker trains more parts than a slow one, as with TensorFlow's
/// asynchronous workers, while every sample is still trained once per epoch.
/// Ssp workers keep their own share of every global batch: a worker whose
/// pull the staleness bound holds back must be able to count on the slower
/// workers' pushes, which with a shared queue could run out at an epoch's end
/// (the fast one holding more than K parts more than a slow one would wait
/// forever); with fixed shares every worker runs every global step, so the
/// bound always clears. The epoch's end is a barrier: evaluation and
/// checkpoints see every worker's updates of the epoch.
void run_worker(trainer_actor* self, int replica) {
  auto& st = self->state;
  auto& w = worker(st, replica);
  const auto replicas = st.grid.replicas;
  const auto epoch_end =
      std::min(st.total_steps, (st.step / st.steps_per_epoch + 1) * st.steps_per_epoch);
  if (w.running)
    return;
  if (st.cfg.topology.ps_mode == ps_mode::ssp) {
    if (w.next >= epoch_end)
      return;
    w.part = w.next * replicas + replica;
  } else {
    if (st.async.next_part >= epoch_end * replicas)
      return;
    w.part = st.async.next_part++;
  }
  w.running = true;
  const auto loader = static_cast<std::size_t>(w.part % replicas);
  fetch_batch(self, st.cfg.train_loaders[loader], replica, w.next, true,
              [self, replica](actors::batch_msg& b) { worker_batch(self, replica, b); });
}

} // namespace

void async_start_step(trainer_actor* self) {
  auto& st = self->state;
  // The workers drive themselves up to the epoch's end; a global step is
  // done once all its parts are, whichever workers ran them.
  if (auto it = st.async.parts.find(st.step);
      it != st.async.parts.end() && it->second.done == st.grid.replicas) {
    st.current.loss = it->second.loss;
    st.async.parts.erase(it);
    st.epoch.index = st.step / st.steps_per_epoch;
    st.epoch.batch = st.step % st.steps_per_epoch;
    step_completed(self);
    return;
  }
  const bool idle = std::none_of(st.async.workers.begin(), st.async.workers.end(),
                                 [](const worker_progress& w) { return w.running; });
  if (idle) {
    st.current.started = clock_type::now();
    start_epoch_clock(st, st.step / st.steps_per_epoch, st.step % st.steps_per_epoch);
  }
  for (int r = 0; r < st.grid.replicas; ++r)
    run_worker(self, r);
}

void worker_step_done(trainer_actor* self, int replica) {
  auto& st = self->state;
  auto& w = worker(st, replica);
  if (--w.pending > 0)
    return;
  w.running = false;
  ++w.next;
  ++st.async.parts[w.part / st.grid.replicas].done;
  start_step(self);
}

actors::stage_report& worker_loss(trainer_state& st, int replica) {
  return st.async.parts[worker(st, replica).part / st.grid.replicas].loss;
}

} // namespace troupe::actors::training
