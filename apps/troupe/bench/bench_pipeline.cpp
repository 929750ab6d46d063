// `troupe bench pipeline`: for each pipeline schedule (gpipe, 1f1b,
// interleaved, zb1, zbv) a short training job through actors::run_training, the code
// path of `troupe train`, with --trace; with --processes the same job is
// submitted with `troupe train --supervisor` to a supervisor and one node
// process per stage on 127.0.0.1 (this executable, --insecure-plain), and the
// supervisor's process writes the trace. From the trace (actors::
// step_timelines), per timed step (the first --warmup steps are left out):
//   T         the step's time: the first stage's step_msg .. the last
//             stage's report (the union of the stages' `step` spans)
//   busy_s    stage s's forward, backward, weight and optimizer events of the step
//   bubble    sum_s (T - busy_s) / (P x T); a row shows the median over the
//             timed steps, min and max next to it
//   overhead  (stage s's step span - busy_s - its `wait` events) / M: per
//             micro-batch, time in the step neither in kernels nor waiting
//             for an input (shard <-> device thread messages, wake-ups)
// The bubble is compared with theory, (P-1)/(M+P-1) for gpipe and 1f1b,
// (P-1)/(V*M+P-1) for interleaved, and for the zero-bubble schedules from
// the measured mean F, B, W per micro-batch and stage: zb1 (ZB-H1)
// (P-1)(F+B-W) / ((P-1)(F+B-W) + M(F+B+W)), zbv (ZB-V, M >= 2P) only the
// start-up, (P-1)F/2 / ((P-1)F/2 + M(F+B+W)); and with the schedule
// simulator fed each stage's measured mean forward, backward and weight (per
// chunk) and optimizer times, which predicts unbalanced pipelines too: --slow-stage S adds a row
// per schedule with stage S's kernels --slow-factor times slower.
// Throughput: batch x timed steps / the trainer's summed step times. Peak
// activation memory: the report's per-stage peak_saved_bytes.

#include "apps/troupe/bench/bench_pipeline.hpp"

#include <sched.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <caf/actor_system.hpp>
#include <nlohmann/json.hpp>

#include "actors/cluster/job.hpp"
#include "actors/plan/plan.hpp"
#include "actors/plan/schedule.hpp"
#include "actors/plan/schedule_simulation.hpp"
#include "actors/plan/step_timeline.hpp"
#include "actors/plan/time_breakdown.hpp"
#include "actors/plan/train_options.hpp"
#include "actors/protocol/system_config.hpp"
#include "apps/troupe/bench/bench_job.hpp"
#include "apps/troupe/bench/bench_local_cluster.hpp"
#include "apps/troupe/bench/bench_util.hpp"
#include "models/partitioner.hpp"
#include "runtime/error.hpp"
#include "runtime/io/temp_dir.hpp"
#include "runtime/telemetry/wake_probe.hpp"

namespace troupe::apps {

namespace {

namespace fs = std::filesystem;
using actors::schedule_kind;

constexpr const char* bubble_definition =
    "per timed step: T = first stage's step_msg .. last stage's report (union of the stages' step "
    "spans); busy_s = stage s's forward + backward + weight + optimizer events of the step; "
    "bubble = "
    "sum_s (T - busy_s) / (P x T); median over the timed steps";
constexpr const char* overhead_definition =
    "(stage's step span - its compute events - its wait-for-input events) / micro-batches, mean "
    "over the timed steps";

struct pipeline_flags {
  std::string model = "mlp";
  std::string data_dir; ///< empty: data/mnist, or data/sherlock.txt for the transformer
  int stages = 2;
  int microbatches = 4;
  std::string schedule = "all";
  int virtual_stages = 2;
  std::int64_t steps = 20;
  std::int64_t warmup = 3;
  std::int64_t batch = 64;
  std::string optimizer = "sgd";
  int threads = 0; ///< in all; 0: one per core
  bool processes = false;
  int slow_stage = -1;
  double slow_factor = 2.0;
  std::string json;
  std::string keep_traces;
};

/// The cores this process may run on (taskset narrows them), else all.
unsigned usable_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
    return static_cast<unsigned>(CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

/// One job of the benchmark: a schedule, balanced or with a slowed stage.
struct run_spec {
  schedule_kind schedule = schedule_kind::gpipe;
  int virtual_stages = 1;
  int slow_stage = -1;
  double slow_factor = 1.0;
  /// Per stage, its layer chunks as the plan placed them: "[0, 1) | [3, 4)".
  std::vector<std::string> layers;

  std::string name() const {
    auto n = std::string{actors::to_string(schedule)};
    return schedule == schedule_kind::interleaved ? n + " V=" + std::to_string(virtual_stages) : n;
  }
  bool split() const { return actors::splits_backward(schedule); }
  std::string slowed() const {
    return slow_stage < 0 ? "-"
                          : "stage " + std::to_string(slow_stage) + " x" + number(slow_factor);
  }
  std::string file_name() const {
    auto n = "pipeline-" + std::string{actors::to_string(schedule)};
    if (schedule == schedule_kind::interleaved)
      n += "-v" + std::to_string(virtual_stages);
    if (slow_stage >= 0)
      n += "-slow" + std::to_string(slow_stage) + "x" + number(slow_factor);
    return n + ".json";
  }
  /// (P-1)/(M+P-1), or (P-1)/(V*M+P-1) interleaved: balanced stages, no
  /// overhead. The zero-bubble schedules' depend on the costs: f, b, w are
  /// one micro-batch's forward, backward (input gradient) and weight
  /// gradient through a whole stage (ZB-H1's idle time (P-1)(F+B-W); ZB-V's
  /// only the last device's start-up, half a stage's forward per device).
  double theory(int p, int m, double f, double b, double w) const {
    const double work = m * (f + b + w);
    if (schedule == schedule_kind::zb1 || schedule == schedule_kind::zbv) {
      const double idle =
          (p - 1) * (schedule == schedule_kind::zb1 ? std::max(0.0, f + b - w) : f / 2);
      return idle + work > 0 ? idle / (idle + work) : 0.0;
    }
    const int v = schedule == schedule_kind::interleaved ? virtual_stages : 1;
    return static_cast<double>(p - 1) / (static_cast<double>(v) * m + p - 1);
  }
};

/// A stage's figures in one row, means per timed step.
struct stage_figures {
  double forward_ms = 0, backward_ms = 0, optimizer_ms = 0, wait_ms = 0, span_ms = 0;
  double weight_ms = 0; ///< split schedules' weight actions (0 elsewhere)
  double overhead_us_per_microbatch = 0;
  std::uint64_t peak_activation_bytes = 0;
  int peak_in_flight = 0;
  actors::time_breakdown breakdown; ///< where the trainer's step went, from this stage's view
  double busy_ms() const { return forward_ms + backward_ms + weight_ms + optimizer_ms; }
};

/// One row of the table: what a run measured.
struct row {
  run_spec spec;
  std::size_t timed_steps = 0;
  double samples_per_second = 0, step_ms = 0, trainer_step_ms = 0;
  double bubble = 0, bubble_min = 0, bubble_max = 0; ///< measured: median, min, max
  double bubble_theory = 0, bubble_simulated = 0;
  /// Mean forward / backward / weight ms per micro-batch through a stage
  /// (all of its chunks), over the stages: what the theory was fed.
  double f_ms = 0, b_ms = 0, w_ms = 0;
  std::vector<stage_figures> stages;
  std::string trace_file; ///< with --keep-traces

  nlohmann::json to_json() const {
    nlohmann::json st = nlohmann::json::array();
    for (std::size_t k = 0; k < stages.size(); ++k) {
      const auto& s = stages[k];
      st.push_back({{"stage", k},
                    {"forward_ms", s.forward_ms},
                    {"backward_ms", s.backward_ms},
                    {"weight_ms", s.weight_ms},
                    {"optimizer_ms", s.optimizer_ms},
                    {"busy_ms", s.busy_ms()},
                    {"wait_ms", s.wait_ms},
                    {"step_span_ms", s.span_ms},
                    {"overhead_us_per_microbatch", s.overhead_us_per_microbatch},
                    {"peak_activation_bytes", s.peak_activation_bytes},
                    {"peak_in_flight", s.peak_in_flight},
                    {"where_the_time_goes", actors::to_json(s.breakdown)}});
    }
    return {{"schedule", std::string{actors::to_string(spec.schedule)}},
            {"virtual_stages", spec.virtual_stages},
            {"layers", spec.layers},
            {"slow_stage", spec.slow_stage},
            {"slow_factor", spec.slow_factor},
            {"timed_steps", timed_steps},
            {"samples_per_second", samples_per_second},
            {"step_ms", step_ms},
            {"trainer_step_ms", trainer_step_ms},
            {"bubble_measured", bubble},
            {"bubble_measured_min", bubble_min},
            {"bubble_measured_max", bubble_max},
            {"bubble_theory", bubble_theory},
            {"bubble_simulated", bubble_simulated},
            {"forward_ms_per_microbatch", f_ms},
            {"backward_ms_per_microbatch", b_ms},
            {"weight_ms_per_microbatch", w_ms},
            {"stages", st},
            {"trace_file", trace_file.empty() ? nlohmann::json() : nlohmann::json(trace_file)}};
  }
};

actors::train_options options_for(const pipeline_flags& f, const run_spec& r,
                                  const fs::path& trace) {
  auto o = timed_job_options(f.warmup, f.steps);
  o.model = f.model;
  o.data_dir = f.data_dir;
  o.batch = f.batch;
  o.optimizer = f.optimizer;
  o.stages = f.stages;
  o.microbatches = f.microbatches;
  o.schedule = r.schedule;
  o.virtual_stages = r.virtual_stages;
  o.threads = f.threads;
  o.trace_file = trace.string();
  o.slow_stage = r.slow_stage;
  o.slow_factor = r.slow_factor;
  return o;
}

/// The row of one run, from its trace and report.
row analyse(const run_spec& r, const pipeline_flags& f, const nlohmann::json& trace,
            const nlohmann::json& report) {
  std::vector<actors::step_timeline> timed;
  for (auto& t : actors::step_timelines(trace))
    if (t.step >= f.warmup)
      timed.push_back(std::move(t));
  if (timed.empty())
    throw std::runtime_error("the trace of " + r.name() + " holds no timed step");
  const auto p = static_cast<std::size_t>(f.stages);
  const int m = f.microbatches;
  const auto v = static_cast<std::size_t>(r.virtual_stages);
  if (timed.front().stages.size() != p)
    throw std::runtime_error("the trace of " + r.name() + " has " +
                             std::to_string(timed.front().stages.size()) + " stage tracks, not " +
                             std::to_string(p));
  const double n = static_cast<double>(timed.size());
  row w;
  w.spec = r;
  w.timed_steps = timed.size();
  w.stages.resize(p);
  std::vector<double> bubbles;
  double t_sum = 0, trainer_sum = 0;
  std::vector<std::vector<double>> fwd(p, std::vector<double>(v, 0.0)), bwd = fwd, wgt = fwd;
  std::vector<double> tail(p, 0.0);
  std::vector<std::vector<actors::time_breakdown>> parts(p);
  for (const auto& t : timed) {
    bubbles.push_back(t.bubble());
    t_sum += t.seconds();
    trainer_sum += t.trainer_seconds > 0 ? t.trainer_seconds : t.seconds();
    for (std::size_t k = 0; k < p; ++k) {
      const auto& s = t.stages[k];
      auto& o = w.stages[k];
      o.forward_ms += 1e3 * s.forward / n;
      o.backward_ms += 1e3 * s.backward / n;
      o.weight_ms += 1e3 * s.weight / n;
      o.optimizer_ms += 1e3 * s.optimizer / n;
      o.wait_ms += 1e3 * s.wait / n;
      o.span_ms += 1e3 * s.span() / n;
      o.overhead_us_per_microbatch += 1e6 * s.overhead() / (n * m);
      tail[k] += s.optimizer / n;
      parts[k].push_back(actors::stage_breakdown(t, k));
      for (std::size_t c = 0; c < v && c < s.forward_by_chunk.size(); ++c)
        fwd[k][c] += s.forward_by_chunk[c] / (n * m);
      for (std::size_t c = 0; c < v && c < s.backward_by_chunk.size(); ++c)
        bwd[k][c] += s.backward_by_chunk[c] / (n * m);
      for (std::size_t c = 0; c < v && c < s.weight_by_chunk.size(); ++c)
        wgt[k][c] += s.weight_by_chunk[c] / (n * m);
    }
  }
  for (std::size_t k = 0; k < p; ++k)
    w.stages[k].breakdown = actors::mean_breakdown(parts[k]);
  std::sort(bubbles.begin(), bubbles.end());
  const auto mid = bubbles.size() / 2;
  w.bubble = bubbles.size() % 2 ? bubbles[mid] : 0.5 * (bubbles[mid - 1] + bubbles[mid]);
  w.bubble_min = bubbles.front();
  w.bubble_max = bubbles.back();
  w.step_ms = 1e3 * t_sum / n;
  w.trainer_step_ms = 1e3 * trainer_sum / n;
  w.samples_per_second = static_cast<double>(f.batch) * n / std::max(trainer_sum, 1e-12);
  for (const auto& st : w.stages) {
    w.f_ms += st.forward_ms / (m * static_cast<double>(p));
    w.b_ms += st.backward_ms / (m * static_cast<double>(p));
    w.w_ms += st.weight_ms / (m * static_cast<double>(p));
  }
  w.bubble_theory = r.theory(f.stages, m, w.f_ms, w.b_ms, w.w_ms);

  // The simulator with the measured mean times (a chunk without events: 1 ns).
  for (auto* costs : {&fwd, &bwd, &wgt})
    for (auto& stage : *costs)
      for (auto& c : stage)
        c = std::max(c, 1e-9);
  std::vector<std::vector<actors::action>> lists;
  for (int k = 0; k < f.stages; ++k)
    lists.push_back(actors::make_schedule(r.schedule, f.stages, k, m, r.virtual_stages));
  auto sim =
      actors::simulate(lists, f.stages, r.virtual_stages, m,
                       actors::action_costs{fwd, bwd, r.split() ? wgt : decltype(wgt){}, tail},
                       actors::layout_of(r.schedule));
  if (!sim.completed)
    throw std::runtime_error("simulating " + r.name() + ": " + sim.error);
  w.bubble_simulated = sim.bubble();

  for (const auto& s : report.at("stages")) {
    auto k = s.at("stage").get<std::size_t>();
    if (k < p) {
      w.stages[k].peak_activation_bytes = s.at("peak_saved_bytes").get<std::uint64_t>();
      w.stages[k].peak_in_flight = s.at("peak_in_flight").get<int>();
    }
  }
  return w;
}

/// "a/b/c" of one stage figure per stage.
std::string per_stage(const std::vector<stage_figures>& stages,
                      const std::function<double(const stage_figures&)>& figure,
                      const char* format) {
  std::string s;
  for (const auto& st : stages) {
    char buf[32];
    std::snprintf(buf, sizeof buf, format, figure(st));
    if (!s.empty())
      s += '/';
    s += buf;
  }
  return s;
}

void print_row(const row& w) {
  char bubble[48];
  std::snprintf(bubble, sizeof bubble, "%5.1f%% (%.1f-%.1f)", 100 * w.bubble, 100 * w.bubble_min,
                100 * w.bubble_max);
  auto mib = per_stage(
      w.stages, [](const stage_figures& s) { return s.peak_activation_bytes / 1048576.0; }, "%.3f");
  auto over = per_stage(
      w.stages, [](const stage_figures& s) { return s.overhead_us_per_microbatch; }, "%.1f");
  char fbw[40];
  std::snprintf(fbw, sizeof fbw, "%.2f/%.2f/%.2f", w.f_ms, w.b_ms, w.w_ms);
  std::printf("%-16s %-11s %-17s %10.1f %8.2f  %-20s %6.1f%% %6.1f%%  %-20s %s\n",
              w.spec.name().c_str(), w.spec.slowed().c_str(), fbw, w.samples_per_second, w.step_ms,
              bubble, 100 * w.bubble_theory, 100 * w.bubble_simulated, mib.c_str(), over.c_str());
  std::string layers;
  for (std::size_t k = 0; k < w.spec.layers.size(); ++k)
    layers += (k ? "; stage " : "stage ") + std::to_string(k) + " " + w.spec.layers[k];
  std::printf("  layers: %s\n", layers.c_str());
  for (std::size_t k = 0; k < w.stages.size(); ++k) {
    const auto& b = w.stages[k].breakdown;
    std::printf("  where the time goes, stage %zu (ms/step, %% of the %.3f ms trainer step): %s\n",
                k, 1e3 * b.step, actors::to_text(b).c_str());
  }
  std::fflush(stdout);
}

/// The runs --schedule asks for (each also slowed with --slow-stage), every
/// one validated and planned before any runs; an interleaved run the model
/// has too few layers for is skipped (with --schedule all) and named in
/// `skipped`.
std::vector<run_spec> planned_runs(const pipeline_flags& f, unsigned cores,
                                   std::vector<std::string>& skipped) {
  std::vector<schedule_kind> kinds;
  if (f.schedule == "all")
    kinds = {schedule_kind::gpipe, schedule_kind::one_f_one_b, schedule_kind::interleaved,
             schedule_kind::zb1, schedule_kind::zbv};
  else
    kinds = {actors::parse_schedule_kind(f.schedule)};
  std::vector<run_spec> runs;
  for (auto kind : kinds) {
    const int v =
        actors::chunks_for(kind, kind == schedule_kind::interleaved ? f.virtual_stages : 1);
    std::vector<run_spec> variants{{kind, v, -1, 1.0, {}}};
    if (f.slow_stage >= 0)
      variants.push_back({kind, v, f.slow_stage, f.slow_factor, {}});
    for (auto& r : variants) {
      try {
        auto o = options_for(f, r, "trace.json");
        o.validate();
        for (const auto& st : actors::make_plan(o, cores).stages)
          r.layers.push_back(models::to_string(st.chunks, " | "));
      } catch (const runtime::input_error& e) {
        if (f.schedule != "all" || v == 1)
          throw;
        skipped.push_back(r.name() + ": " + e.what()); // too few layers for P x V chunks
        break;
      }
      runs.push_back(r);
    }
  }
  return runs;
}

/// --keep-traces' directory, created.
fs::path keep_traces_dir(const pipeline_flags& f) {
  fs::path dir = f.keep_traces;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec)
    throw runtime::input_error("--keep-traces " + f.keep_traces + ": " + ec.message());
  return dir;
}

/// The definitions under the table, and what slowing a stage did to each
/// schedule's bubble.
void print_notes(const std::vector<row>& rows) {
  std::printf("\nbubble: %s\ntheory: (P-1)/(M+P-1), interleaved (P-1)/(V*M+P-1), zb1 "
              "(P-1)(F+B-W)/((P-1)(F+B-W)+M(F+B+W)), zbv (P-1)F/2/((P-1)F/2+M(F+B+W)) (M >= 2P) "
              "with F/B/W the measured means per micro-batch and stage (B: the whole backward "
              "where it is not split); sim: the schedule simulator with each stage's measured "
              "mean forward/backward/weight (per chunk) and optimizer times\noverhead: %s\n",
              bubble_definition, overhead_definition);
  for (std::size_t i = 0; i + 1 < rows.size(); ++i) {
    const auto& a = rows[i];
    const auto& b = rows[i + 1];
    if (a.spec.slow_stage >= 0 || b.spec.slow_stage < 0 || a.spec.schedule != b.spec.schedule)
      continue;
    std::printf("%s, %s: measured bubble %.1f%% -> %.1f%% (%+.1f pp), simulator %.1f%% -> "
                "%.1f%% (%+.1f pp)\n",
                a.spec.name().c_str(), b.spec.slowed().c_str(), 100 * a.bubble, 100 * b.bubble,
                100 * (b.bubble - a.bubble), 100 * a.bubble_simulated, 100 * b.bubble_simulated,
                100 * (b.bubble_simulated - a.bubble_simulated));
  }
}

/// What the JSON report holds besides the flags.
struct pipeline_report {
  const std::vector<row>& rows;
  const std::vector<std::string>& skipped;
  int per_device = 1;
  unsigned cores = 1;
  std::string load_before, load_after;
  runtime::wake_latency wake;
};

void write_report(const pipeline_flags& f, const pipeline_report& r) {
  const auto& [rows, skipped, per_device, cores, load_before, load_after, wake] = r;
  nlohmann::json out = nlohmann::json::array();
  for (const auto& w : rows)
    out.push_back(w.to_json());
  write_json_file(f.json, {{"benchmark", "pipeline"},
                           {"model", f.model},
                           {"stages", f.stages},
                           {"microbatches", f.microbatches},
                           {"virtual_stages", f.virtual_stages},
                           {"batch", f.batch},
                           {"optimizer", f.optimizer},
                           {"steps", f.steps},
                           {"warmup", f.warmup},
                           {"threads_per_stage", per_device},
                           {"processes", f.processes},
                           {"cores", cores},
                           {"load_average_before", load_before},
                           {"load_average_after", load_after},
                           {"wake_latency", runtime::to_json(wake)},
                           {"bubble_definition", bubble_definition},
                           {"overhead_definition", overhead_definition},
                           {"skipped", skipped},
                           {"rows", out}});
}

int bench_pipeline(pipeline_flags f) {
  if (f.data_dir.empty())
    f.data_dir = f.model == "transformer" ? "data/sherlock.txt" : "data/mnist";
  if (!fs::exists(f.data_dir))
    throw runtime::input_error("--data: no '" + f.data_dir + "'");
  const unsigned cores = usable_cores();
  if (f.threads == 0)
    f.threads = static_cast<int>(cores); // as `troupe train`, but of the cores we may use

  // Every run's options are checked (and planned) before any runs.
  std::vector<std::string> skipped;
  const auto runs = planned_runs(f, cores, skipped);

  runtime::temp_dir tmp{"troupe-bench-"};
  const fs::path trace_dir = f.keep_traces.empty() ? tmp.path() : keep_traces_dir(f);

  const auto load_before = load_average();
  const int per_device = std::max(1, f.threads / f.stages);
  std::printf("troupe bench pipeline: model %s, P=%d stages, M=%d micro-batches, batch %lld, %s, "
              "%lld timed steps after %lld warm-up, %d BLAS thread(s) per stage, %s\n",
              f.model.c_str(), f.stages, f.microbatches, static_cast<long long>(f.batch),
              f.optimizer.c_str(), static_cast<long long>(f.steps),
              static_cast<long long>(f.warmup), per_device,
              f.processes ? "a supervisor and one node process per stage on 127.0.0.1"
                          : "in process");
  std::printf("%u cores, load average %s%s\n", cores, load_before.c_str(),
              static_cast<unsigned>(f.stages) > cores ? "; more stages than cores" : "");
  std::printf("BLAS of each stage: %s\n",
              troupe_blas(per_device, kernels::cpu::gemm_backend::automatic).c_str());
  for (const auto& s : skipped)
    std::printf("skipped %s\n", s.c_str());
  std::printf("\n%-16s %-11s %-17s %10s %8s  %-20s %7s %7s  %-20s %s\n", "schedule", "slowed",
              "F/B/W ms per mb", "samples/s", "step ms", "bubble (min-max)", "theory", "sim",
              "peak act MiB/stage", "overhead us/mb/stage");
  std::fflush(stdout);

  std::unique_ptr<local_cluster> cluster;
  std::unique_ptr<actors::system_config> cfg;
  std::unique_ptr<caf::actor_system> sys;
  if (f.processes) {
    cluster = std::make_unique<local_cluster>(tmp.path(), f.stages, per_device,
                                              static_cast<int>(runs.size()));
  } else {
    cfg = std::make_unique<actors::system_config>();
    sys = std::make_unique<caf::actor_system>(*cfg);
  }
  std::vector<row> rows;
  for (std::size_t i = 0; i < runs.size(); ++i) {
    const auto& r = runs[i];
    const auto trace_file = fs::absolute(trace_dir / r.file_name());
    auto o = options_for(f, r, trace_file);
    auto report =
        cluster ? cluster->train(o, static_cast<int>(i)) : actors::run_training(*sys, o).report;
    std::ifstream in(trace_file);
    if (!in)
      throw std::runtime_error("no trace at " + trace_file.string());
    rows.push_back(analyse(r, f, nlohmann::json::parse(in), report));
    if (!f.keep_traces.empty())
      rows.back().trace_file = trace_file.string();
    print_row(rows.back());
  }
  const auto load_after = load_average();
  const auto wake = runtime::measure_wake_latency();

  print_notes(rows);
  std::printf("%s: a parked device's hand-off costs at least one\n",
              runtime::to_text(wake).c_str());
  std::printf("load average after: %s%s\n", load_after.c_str(), busy_note(load_after, cores));
  if (!f.json.empty()) {
    write_report(f, {rows, skipped, per_device, cores, load_before, load_after, wake});
    std::printf("wrote %s\n", f.json.c_str());
  }
  return exit_ok;
}

} // namespace

command_action add_bench_pipeline_command(CLI::App& bench) {
  auto* cmd = bench.add_subcommand(
      "pipeline", "pipeline schedules: throughput, bubble (measured vs theory), peak activation "
                  "memory and runtime overhead per stage, from a traced training run");
  auto f = std::make_shared<pipeline_flags>();
  cmd->add_option("--model", f->model, "zoo model")
      ->check(CLI::IsMember({"mlp", "cnn", "transformer", "mlp_even"}))
      ->capture_default_str();
  cmd->add_option("--data", f->data_dir,
                  "data (default: data/mnist, data/sherlock.txt for the transformer)");
  cmd->add_option("--stages", f->stages, "pipeline depth P")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  cmd->add_option("--microbatches", f->microbatches, "micro-batches per step M")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  cmd->add_option("--schedule", f->schedule, "gpipe | 1f1b | interleaved | zb1 | zbv | all")
      ->check(CLI::IsMember({"gpipe", "1f1b", "interleaved", "zb1", "zbv", "all"}))
      ->capture_default_str();
  cmd->add_option("--virtual-stages", f->virtual_stages, "chunks per stage V of interleaved")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  cmd->add_option("--steps", f->steps, "timed steps per schedule")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1000000}))
      ->capture_default_str();
  cmd->add_option("--warmup", f->warmup, "steps before them, left out")
      ->check(CLI::Range(std::int64_t{0}, std::int64_t{1000000}))
      ->capture_default_str();
  cmd->add_option("--batch", f->batch, "global batch")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1} << 20))
      ->capture_default_str();
  cmd->add_option("--optimizer", f->optimizer, "sgd | adam | adamw")
      ->check(CLI::IsMember({"sgd", "adam", "adamw"}))
      ->capture_default_str();
  cmd->add_option("--threads", f->threads,
                  "BLAS threads in all, split over the stages "
                  "(default: one per core)")
      ->check(CLI::Range(1, 1024));
  cmd->add_flag("--processes", f->processes,
                "run a supervisor and one node process per stage on 127.0.0.1 (plain TCP) and "
                "submit the jobs to them");
  cmd->add_option("--slow-stage", f->slow_stage,
                  "also run each schedule with this stage's kernels --slow-factor times slower")
      ->check(CLI::Range(0, 63));
  cmd->add_option("--slow-factor", f->slow_factor, "how much slower --slow-stage runs")
      ->check(CLI::Range(1.0, 100.0))
      ->capture_default_str();
  cmd->add_option("--json", f->json, "also write the rows as JSON to FILE");
  cmd->add_option("--keep-traces", f->keep_traces,
                  "write each run's trace into DIR (pipeline-SCHEDULE.json) and keep it");
  return [f] { return bench_pipeline(*f); };
}

} // namespace troupe::apps
