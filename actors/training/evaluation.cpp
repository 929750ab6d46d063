#include "actors/training/evaluation.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <utility>
#include <vector>

#include "actors/pipeline/data_loader.hpp"
#include "actors/training/checkpoint.hpp"
#include "actors/training/report.hpp"
#include "actors/training/step_dispatch.hpp"

namespace troupe::actors::training {

namespace {

/// Sets the evaluation's results, logs them and hands on to its continuation.
void eval_done(trainer_actor* self) {
  auto& st = self->state;
  auto& ev = st.eval;
  ev.running = false;
  ev.test_loss = ev.tokens ? ev.loss_sum / double(ev.tokens) : 0;
  nlohmann::json entry{
      {"step", st.step}, {"test_loss", ev.test_loss}, {"test_samples", ev.samples}};
  if (st.language_model) {
    ev.bits_per_char = ev.test_loss / std::log(2.0);
    entry["bits_per_char"] = ev.bits_per_char;
  } else if (st.cfg.opts.loss == loss_kind::mse) {
    ev.test_mae = ev.samples ? ev.abs_error_sum / double(ev.samples) : 0;
    entry["test_mse"] = ev.test_loss;
    entry["test_mae"] = ev.test_mae;
  } else {
    ev.test_accuracy = ev.samples ? double(ev.correct) / double(ev.samples) : 0;
    entry["test_accuracy"] = ev.test_accuracy;
  }
  ev.log.push_back(std::move(entry));
  auto k = std::move(ev.then);
  k();
}

void eval_next(trainer_actor* self) {
  auto& st = self->state;
  if (st.eval.batches_left == 0) {
    eval_done(self);
    return;
  }
  // Evaluation steps use negative ids so they never collide with training
  // steps. Replica 0 evaluates alone (the replicas are identical).
  const auto step = -(++st.eval.counter);
  fetch_batch(self, st.cfg.test_loader, 0, step, false, [self, step](actors::batch_msg& b) {
    auto& s = self->state;
    s.eval.batch_base = b.index * s.cfg.test_batch;
    std::vector<actors::batch_msg> parts{std::move(b)};
    send_steps(self, parts, step, false);
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

void store_outputs(trainer_state& st, const actors::stage_report& r) {
  auto& ev = st.eval;
  for (std::size_t i = 0; i < r.outputs.size() && i < r.output_offsets.size(); ++i) {
    const auto& y = r.outputs[i];
    if (!ev.predictions.defined()) {
      auto shape = y.shape();
      shape.at(0) = st.cfg.test_samples;
      ev.predictions = runtime::tensor::zeros(y.type(), shape);
    }
    const auto row = static_cast<std::size_t>(y.nbytes() / std::max<std::int64_t>(1, y.dim(0)));
    const auto first = ev.batch_base + r.output_offsets[i];
    if (first < 0 || first + y.dim(0) > st.cfg.test_samples)
      continue; // cannot happen with the test loader's batches
    auto* to = reinterpret_cast<std::byte*>(ev.predictions.mutable_data<float>());
    std::memcpy(to + static_cast<std::size_t>(first) * row, y.data<float>(), y.nbytes());
  }
}

void final_eval(trainer_actor* self, std::function<void()> then) {
  start_eval(self, [self, then] {
    auto& s = self->state;
    if (s.cfg.opts.progress && s.language_model)
      std::fprintf(stderr, "step %lld: held-out loss %.4f (%.3f bits/char)\n",
                   static_cast<long long>(s.step), s.eval.test_loss, s.eval.bits_per_char);
    else if (s.cfg.opts.progress)
      std::fprintf(stderr, "step %lld: test accuracy %.2f%%, test loss %.4f\n",
                   static_cast<long long>(s.step), 100.0 * s.eval.test_accuracy, s.eval.test_loss);
    then();
  });
}

bool eval_due(const trainer_state& st) {
  const auto& o = st.cfg.opts;
  if (!o.evaluate)
    return false;
  return st.step >= st.total_steps || (o.eval_every > 0 && st.step % o.eval_every == 0);
}

void evaluate_checkpoint(trainer_actor* self) {
  load_params(self, [self] {
    start_eval(self, [self] {
      auto& st = self->state;
      runtime::named_tensors out;
      if (st.eval.predictions.defined()) {
        out.names.push_back("predictions");
        out.tensors.push_back(std::move(st.eval.predictions));
      }
      self->send(st.cfg.report_to, job_done_atom::value, make_report(st).dump(), std::move(out));
      self->quit();
    });
  });
}

} // namespace troupe::actors::training
