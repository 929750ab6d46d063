#include "actors/training/report.hpp"

#include <algorithm>
#include <exception>
#include <string>
#include <vector>

#include "actors/training/job_trace.hpp"
#include "kernels/cpu/gemm.hpp"
#include "runtime/build_info.hpp"
#include "runtime/io/file_util.hpp"

namespace troupe::actors::training {

namespace {

/// Per shard over the run's training steps: memory peaks (the schedule's
/// cost, `troupe bench pipeline`) and the totals /metrics shows.
nlohmann::json stage_totals_json(const trainer_state& st) {
  nlohmann::json stages = nlohmann::json::array();
  for (const auto& t : st.totals.stages) {
    stages.push_back({{"stage", t.stage},
                      {"compute_seconds", t.compute_seconds},
                      {"peak_in_flight", t.peak_in_flight},
                      {"peak_saved_bytes", t.peak_saved_bytes},
                      {"messages_sent", t.messages_sent},
                      {"bytes_sent", t.bytes_sent}});
    auto& j = stages.back();
    if (st.grid.replicas > 1) {
      j["replica"] = t.replica;
      j["allreduce_buckets"] = t.buckets;
      j["allreduce_bytes"] = t.allreduce_bytes;
      j["allreduce_seconds"] = t.allreduce_seconds;
      j["updates_in_reduction"] = t.updates_in_reduction;
    }
    if (st.grid.tp > 1)
      j["tp_rank"] = t.tp_rank;
    if (!st.cfg.ps_shards.empty()) {
      j["ps_bytes"] = t.ps_bytes;
      j["ps_seconds"] = t.ps_seconds;
    }
  }
  return stages;
}

/// The report's timing fields: the whole run, the training steps and the
/// timed steps after opts.timing_warmup.
nlohmann::json timing_json(const run_totals& rt) {
  return {
      {"samples_per_second", rt.train_seconds > 0 ? rt.samples / rt.train_seconds : 0.0},
      {"wall_seconds", seconds_between(rt.started, clock_type::now())},
      {"train_seconds", rt.train_seconds},
      {"device_compute_seconds", rt.compute_seconds},
      {"timed_steps", rt.timed_steps},
      {"timed_seconds", rt.timed_seconds},
      {"timed_steps_per_second",
       rt.timed_seconds > 0 ? static_cast<double>(rt.timed_steps) / rt.timed_seconds : 0.0},
      {"timed_device_compute_seconds", rt.timed_compute_seconds},
  };
}

nlohmann::json ps_stats_json(const std::vector<actors::ps_stats>& stats) {
  auto r = nlohmann::json::array();
  for (const auto& x : stats)
    r.push_back({{"shard", x.shard},
                 {"version", x.version},
                 {"pushes", x.pushes},
                 {"pulls", x.pulls},
                 {"bytes_in", x.bytes_in},
                 {"bytes_out", x.bytes_out},
                 {"updates", x.updates},
                 {"max_gap", x.max_gap},
                 {"apply_seconds", x.apply_seconds}});
  return r;
}

/// Writes the trace of the trainer's and the shards' events (in cfg.stages,
/// then cfg.ps_shards order) to opts.trace_file.
void write_trace_file(const trainer_state& st, const std::vector<std::string>& replies) {
  const auto n = static_cast<std::ptrdiff_t>(st.cfg.stages.size());
  std::vector<std::string> stages(replies.begin(), replies.begin() + n);
  std::vector<std::string> ps(replies.begin() + n, replies.end());
  const auto& o = st.cfg.opts;
  nlohmann::json run{{"model", o.model},
                     {"strategy", st.cfg.topology.strategy()},
                     {"schedule", std::string{to_string(st.cfg.topology.schedule)}},
                     {"stages", st.grid.depth},
                     {"replicas", st.grid.replicas},
                     {"microbatches", st.cfg.topology.microbatches},
                     {"batch", o.batch},
                     {"steps", st.step},
                     {"git_commit", std::string{runtime::git_commit()}}};
  auto text = job_trace(st.cfg.topology, stages, ps, st.totals.trace, std::move(run)).dump() + "\n";
  runtime::write_file_atomically(o.trace_file,
                                 {reinterpret_cast<const std::byte*>(text.data()), text.size()});
}

} // namespace

void add_to_totals(trainer_state& st, std::size_t index, const actors::stage_report& r) {
  st.totals.stages.resize(st.cfg.stages.size());
  auto& t = st.totals.stages.at(index);
  t.stage = r.stage;
  t.replica = r.replica;
  t.tp_rank = r.tp_rank;
  t.ps_bytes += r.ps_bytes;
  t.ps_seconds += r.ps_seconds;
  t.buckets += r.buckets;
  t.allreduce_bytes += r.allreduce_bytes;
  t.allreduce_seconds += r.allreduce_seconds;
  t.updates_in_reduction += r.updates_in_reduction;
  t.compute_seconds += r.compute_seconds;
  t.messages_sent += r.messages_sent;
  t.bytes_sent += r.bytes_sent;
  t.peak_in_flight = std::max(t.peak_in_flight, r.peak_in_flight);
  t.peak_saved_bytes = std::max(t.peak_saved_bytes, r.peak_saved_bytes);
}

nlohmann::json make_report(const trainer_state& st) {
  const auto& o = st.cfg.opts;
  const auto& ev = st.eval;
  const double final_loss =
      st.epoch.tokens > 0 ? st.epoch.loss_sum / double(st.epoch.tokens) : st.epoch.last_loss;
  auto known = [](double v) { return v >= 0 ? nlohmann::json(v) : nlohmann::json(); };
  int threads = 0;
  for (const auto& d : st.cfg.topology.devices)
    threads += d.threads;
  nlohmann::json r{
      {"model", o.model},
      {"strategy", st.cfg.topology.strategy()},
      {"epochs", o.epochs},
      {"steps", st.step},
      {"steps_this_run", st.step - st.run_start_step},
      // Stopped early by Ctrl-C (trainer_config::interrupt); steps_per_epoch
      // says how far into its epochs a run (or a resumed checkpoint) is.
      {"interrupted", st.totals.interrupted},
      {"steps_per_epoch", st.steps_per_epoch},
      {"batch", o.batch},
      {"final_loss", final_loss},
      {"test_accuracy", known(ev.test_accuracy)},
      // Language models: the held-out text's loss per character, in bits.
      {"bits_per_char", known(ev.bits_per_char)},
      {"test_loss", known(ev.test_loss)},
      // Regression (--loss mse): the test set's mean squared and absolute errors.
      {"test_mse", o.loss == loss_kind::mse ? known(ev.test_loss) : nlohmann::json()},
      {"test_mae", known(ev.test_mae)},
      // With --clip-norm: the last step's global gradient norm before clipping.
      {"grad_norm", known(st.totals.grad_norm)},
      {"replicas", st.grid.replicas},
      {"tp", st.grid.tp},
      // Parameter servers: per shard its counters (max_gap: the largest
      // staleness it saw serving a pull; ssp keeps it <= staleness).
      {"ps", st.totals.ps_stats.value_or(nlohmann::json::array())},
      {"ps_mode", st.cfg.ps_shards.empty() ? "" : std::string{to_string(st.cfg.topology.ps_mode)}},
      // --check-replicas: steps after which every replica's parameters were
      // found bitwise identical.
      {"replica_checks", st.totals.replica_checks},
      {"replica_digest_comparisons", st.totals.digest_comparisons},
      {"stages", stage_totals_json(st)},
      {"git_commit", std::string{runtime::git_commit()}},
      {"threads", threads},
      {"blas", kernels::cpu::blas_description()},
      {"build", std::string{runtime::build_description()}},
      {"config", to_json(o)},
      {"plan", to_json(st.cfg.topology)},
      {"epoch_log", st.totals.epoch_log},
      // Every evaluation of the run: {step, test_loss, test_accuracy, test_mse
      // and test_mae, or bits_per_char, test_samples}.
      {"evaluations", st.eval.log},
      {"test_samples", st.eval.samples},
      // Per point of `every` steps (bounded: step_series.hpp): loss, lr,
      // samples/s, each stage's busy fraction, a classifier's accuracy.
      {"step_series", st.totals.series.to_json(!st.language_model && o.loss != loss_kind::mse)},
      {"input_normalization", st.cfg.input_normalization.is_null() ? runtime::input_normalization()
                                                                   : st.cfg.input_normalization},
  };
  r.update(timing_json(st.totals));
  return r;
}

void gather_ps_stats(trainer_actor* self, std::function<void()> then) {
  gather<actors::ps_stats>(
      self, self->state.cfg.ps_shards,
      [self, then](std::vector<actors::ps_stats> stats) {
        self->state.totals.ps_stats = ps_stats_json(stats);
        then();
      },
      actors::ps_stats_atom::value);
}

void write_trace(trainer_actor* self, std::function<void()> then) {
  // Layer shards and ps shards alike answer get_trace_atom.
  auto all = self->state.cfg.stages;
  all.insert(all.end(), self->state.cfg.ps_shards.begin(), self->state.cfg.ps_shards.end());
  gather<std::string>(
      self, all,
      [self, then](std::vector<std::string> replies) {
        auto& st = self->state;
        st.totals.trace_written = true;
        try {
          write_trace_file(st, replies);
        } catch (const std::exception& e) {
          fail(self, "--trace " + st.cfg.opts.trace_file + ": " + e.what());
          return;
        }
        st.log->info("trace written to {}", st.cfg.opts.trace_file);
        then();
      },
      actors::get_trace_atom::value);
}

} // namespace troupe::actors::training
