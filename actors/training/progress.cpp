#include "actors/training/progress.hpp"

#include <algorithm>
#include <cstdio>

namespace troupe::actors::training {

namespace {

nlohmann::json progress_json(const trainer_state& st, double step_seconds, std::int64_t samples) {
  nlohmann::json stages = nlohmann::json::array();
  for (const auto& t : st.totals.stages)
    stages.push_back({{"stage", t.stage},
                      {"replica", t.replica},
                      {"messages_sent", t.messages_sent},
                      {"bytes_sent", t.bytes_sent},
                      {"compute_seconds", t.compute_seconds},
                      {"allreduce_bytes", t.allreduce_bytes},
                      {"allreduce_seconds", t.allreduce_seconds},
                      {"tp_rank", t.tp_rank},
                      {"ps_bytes", t.ps_bytes}});
  const auto elapsed = seconds_between(st.epoch.started, clock_type::now());
  return {{"step", st.step},
          {"total_steps", st.total_steps},
          {"epoch", st.epoch.index + 1},
          {"epochs", st.cfg.opts.epochs},
          {"epoch_step", st.epoch.batch + 1},
          {"epoch_steps", st.steps_per_epoch},
          {"epoch_samples_per_second", elapsed > 0 ? st.epoch.run_samples / elapsed : 0.0},
          {"loss", st.epoch.mean_loss()},
          {"lr", learning_rate(st, std::max<std::int64_t>(0, st.step - 1))},
          {"step_seconds", step_seconds},
          {"train_seconds", st.totals.train_seconds},
          {"samples_per_second", step_seconds > 0 ? double(samples) / step_seconds : 0.0},
          {"stages", stages}};
}

} // namespace

bool progress_due(clock_type::time_point last_sent, clock_type::time_point now, bool last) {
  return last || last_sent == clock_type::time_point{} || now - last_sent >= progress_interval;
}

void show_step_progress(trainer_actor* self, double step_seconds, std::int64_t samples,
                        bool epoch_end) {
  auto& st = self->state;
  self->send(st.cfg.report_to, step_done_atom::value, st.step, step_seconds);
  const auto now = clock_type::now();
  if (progress_due(st.totals.progress_sent, now, epoch_end || st.step >= st.total_steps)) {
    st.totals.progress_sent = now;
    self->send(st.cfg.report_to, progress_atom::value,
               progress_json(st, step_seconds, samples).dump());
  }
  if (!st.cfg.opts.progress)
    return;
  auto elapsed = seconds_between(st.epoch.started, now);
  st.progress.update(st.epoch.batch + 1, elapsed > 0 ? st.epoch.run_samples / elapsed : 0,
                     st.epoch.mean_loss(), epoch_end || st.step >= st.total_steps);
}

void tell_epoch_result(trainer_actor* self) {
  auto& st = self->state;
  if (st.totals.epoch_log.empty())
    return;
  self->send(
      st.cfg.report_to, progress_atom::value,
      nlohmann::json{{"epoch_result", st.totals.epoch_log.back()}, {"step", st.step}}.dump());
}

void print_epoch_summary(const trainer_state& st) {
  const auto& o = st.cfg.opts;
  if (!o.progress)
    return;
  const auto epoch = static_cast<long long>(st.epoch.index + 1);
  const auto& ev = st.eval;
  if (o.evaluate && st.language_model)
    std::fprintf(stderr, "epoch %lld: train loss %.4f, held-out loss %.4f (%.3f bits/char)\n",
                 epoch, st.epoch.last_loss, ev.test_loss, ev.bits_per_char);
  else if (o.evaluate && o.loss == loss_kind::mse)
    std::fprintf(stderr, "epoch %lld: train loss %.4f, test mse %.4g, mae %.4g\n", epoch,
                 st.epoch.last_loss, ev.test_loss, ev.test_mae);
  else if (o.evaluate)
    std::fprintf(stderr, "epoch %lld: train loss %.4f, test accuracy %.2f%%\n", epoch,
                 st.epoch.last_loss, 100.0 * ev.test_accuracy);
  else
    std::fprintf(stderr, "epoch %lld: train loss %.4f\n", epoch, st.epoch.last_loss);
}

} // namespace troupe::actors::training
