#include "actors/training/evaluation.hpp"

#include <cmath>
#include <cstdio>
#include <utility>
#include <vector>

#include "actors/pipeline/data_loader.hpp"
#include "actors/training/step_dispatch.hpp"

namespace troupe::actors::training {

namespace {

/// Sets the evaluation's results and hands on to its continuation.
void eval_done(trainer_actor* self) {
  auto& st = self->state;
  auto& ev = st.eval;
  ev.running = false;
  ev.test_loss = ev.tokens ? ev.loss_sum / double(ev.tokens) : 0;
  if (st.language_model)
    ev.bits_per_char = ev.test_loss / std::log(2.0);
  else if (st.cfg.opts.loss == loss_kind::mse)
    ev.test_mae = ev.samples ? ev.abs_error_sum / double(ev.samples) : 0;
  else
    ev.test_accuracy = ev.samples ? double(ev.correct) / double(ev.samples) : 0;
  auto k = std::move(ev.then);
  k();
}

void eval_next(trainer_actor* self) {
  auto& st = self->state;
  if (st.eval.batches_left == 0) {
    eval_done(self);
    return;
  }
  self->request(st.cfg.test_loader, caf::infinite, actors::next_batch_atom::value)
      .then([self](actors::batch_msg& b) {
        // Evaluation steps use negative ids so they never collide with training
        // steps. Replica 0 evaluates alone (the replicas are identical).
        std::vector<actors::batch_msg> parts{std::move(b)};
        send_steps(self, parts, -(++self->state.eval.counter), false);
      });
}

} // namespace

void start_eval(trainer_actor* self, std::function<void()> then) {
  auto& st = self->state;
  auto& ev = st.eval;
  ev.running = true;
  ev.batches_left = batches_per_epoch(st.cfg.test_samples, st.cfg.test_batch);
  ev.correct = 0;
  ev.samples = 0;
  ev.tokens = 0;
  ev.loss_sum = 0;
  ev.abs_error_sum = 0;
  ev.then = std::move(then);
  eval_next(self);
}

void eval_step_done(trainer_actor* self) {
  auto& st = self->state;
  const auto& loss = st.current.loss;
  st.eval.loss_sum += loss.loss_sum;
  st.eval.correct += loss.correct;
  st.eval.samples += loss.samples;
  st.eval.tokens += loss.tokens;
  st.eval.abs_error_sum += loss.abs_error_sum;
  --st.eval.batches_left;
  // A sign of life for the supervisor's stall detection, which otherwise
  // sees no training step while the held-out set is evaluated.
  self->send(st.cfg.report_to, progress_atom::value,
             nlohmann::json{{"evaluating", true}, {"step", st.step}}.dump());
  eval_next(self);
}

void final_eval(trainer_actor* self, std::function<void()> then) {
  start_eval(self, [self, then] {
    auto& s = self->state;
    if (s.cfg.opts.progress)
      std::fprintf(stderr, "step %lld: held-out loss %.4f (%.3f bits/char)\n",
                   static_cast<long long>(s.step), s.eval.test_loss, s.eval.bits_per_char);
    then();
  });
}

} // namespace troupe::actors::training
