// `troupe bench train --dp N`: troupe's data parallelism (N replicas)
// against one replica with as many and with all the threads, and against
// PyTorch DDP over gloo (bench/peers/ddp_mlp.py, N processes).

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <caf/actor_system.hpp>
#include <nlohmann/json.hpp>

#include "actors/protocol/system_config.hpp"
#include "apps/troupe/bench/bench_train_job.hpp"
#include "apps/troupe/bench/bench_util.hpp"
#include "apps/troupe/child_process.hpp"
#include "apps/troupe/commands.hpp"
#include "runtime/error.hpp"
#include "runtime/io/temp_dir.hpp"
#include "runtime/telemetry/wake_probe.hpp"

namespace troupe::apps::train_bench {

namespace {

namespace fs = std::filesystem;

/// The DDP peer script: --ddp-peer, else the copy next to this executable,
/// else the source tree's (relative to the working directory). nullopt with
/// `why` set when there is none.
std::optional<fs::path> find_ddp_peer(const bench_flags& f, std::string& why) {
  std::error_code ec;
  if (!f.ddp_peer.empty()) {
    if (!fs::is_regular_file(f.ddp_peer, ec))
      throw runtime::input_error("--ddp-peer: no file '" + f.ddp_peer + "'");
    return fs::path{f.ddp_peer};
  }
  if (auto p = next_to_self(ddp_peer_name); fs::is_regular_file(p, ec))
    return p;
  if (fs::is_regular_file(ddp_peer_source, ec))
    return fs::path{ddp_peer_source};
  why = std::string{"DDP peer script not found ("} + ddp_peer_name +
        " next to this executable, or ./" + ddp_peer_source + "; --ddp-peer FILE)";
  return std::nullopt;
}

/// The last non-empty line of a file (a peer's final error message).
std::string last_line_of(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  auto line = last_line({std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()});
  return line.empty() ? "(no output)" : line;
}

/// Runs the DDP peer script with `args`, stdout and stderr into `log`.
/// Returns its exit status; 124 when it ran past `timeout_s` and was killed
/// (the peer kills its ranks when it goes, and they die with it).
int run_ddp_script(const bench_flags& f, const fs::path& script, std::vector<std::string> args,
                   const fs::path& log, double timeout_s) {
  args.insert(args.begin(), {f.python, script.string()});
  child_process p{args, log};
  if (auto st = p.wait_for(std::chrono::milliseconds(static_cast<std::int64_t>(timeout_s * 1e3))))
    return *st;
  p.stop(std::chrono::seconds(5));
  return 124;
}

/// Why the DDP peer cannot run here (no interpreter, no torch or gloo for
/// it), or nullopt when it can.
std::optional<std::string> ddp_unavailable(const bench_flags& f, const fs::path& script,
                                           const fs::path& dir) {
  if (!is_executable(f.python))
    return "no Python interpreter at " + f.python + " (--python)";
  auto log = dir / "ddp-check.log";
  int st = run_ddp_script(f, script, {"--check"}, log, 120);
  if (st == 0)
    return std::nullopt;
  return "the DDP peer cannot run (" + f.python + " " + script.string() + " --check: status " +
         std::to_string(st) + "): " + last_line_of(log);
}

/// One DDP run (world processes x f.threads threads); its JSON report.
nlohmann::json run_ddp(const bench_flags& f, const fs::path& script, int world,
                       const fs::path& init, const fs::path& dir, int index) {
  auto out = dir / ("ddp-" + std::to_string(index) + ".json");
  auto log = dir / ("ddp-" + std::to_string(index) + ".log");
  // troupe's 0 means one bucket after backward; DDP's nearest is one bucket as
  // large as the model (it still cuts its first bucket at 1 MiB).
  const auto bucket = number(f.bucket_mb > 0 ? f.bucket_mb : 1024.0);
  // The peer's own deadline comes first, so that it reports and cleans up.
  const auto timeout = number(f.peer_timeout);
  int st = run_ddp_script(f, script, {"--world",     std::to_string(world),
                                      "--threads",   std::to_string(f.threads),
                                      "--batch",     std::to_string(f.batch),
                                      "--optimizer", f.optimizer,
                                      "--lr",        number(f.lr),
                                      "--warmup",    std::to_string(f.warmup),
                                      "--steps",     std::to_string(f.steps),
                                      "--seed",      std::to_string(f.seed),
                                      "--data",      f.data_dir,
                                      "--init",      init.string(),
                                      "--bucket-mb", bucket,
                                      "--timeout",   timeout,
                                      "--out",       out.string()},
                          log, f.peer_timeout + 30);
  if (st != 0)
    throw std::runtime_error("DDP peer run " + std::to_string(index) + " failed (status " +
                             std::to_string(st) + (st == 124 ? ", timed out" : "") +
                             "): " + last_line_of(log));
  std::ifstream in(out);
  try {
    auto j = nlohmann::json::parse(in);
    j.at("samples_per_second").get<double>();
    return j;
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error("DDP peer run " + std::to_string(index) +
                             " wrote no report: " + e.what());
  }
}

/// One configuration of the data-parallel comparison and its repeats.
struct dp_config {
  std::string label; ///< column header
  std::string what;  ///< one line for the legend
  bool ddp = false;
  bool solo = false; ///< N independent single-replica processes (run_independent)
  int replicas = 1;  ///< troupe replicas, or DDP processes
  int threads = 1;   ///< troupe: threads in all; DDP: per process
  std::vector<double> samples_per_second, step_ms, compute_ms, sync_ms;
  nlohmann::json runs = nlohmann::json::array();
};

/// The ratio a / b of two configurations' samples/s, named, with its target.
struct dp_ratio {
  std::string name;
  double target = 0; ///< met when the ratio of medians is >= this (0: no target)
  paired_ratio value;
};

std::string threads_text(int k) {
  return std::to_string(k) + (k == 1 ? " thread" : " threads");
}

/// troupe 1 replica x T and x N*T threads, N replicas x T threads each, and
/// (with the DDP peer) PyTorch DDP N processes x T threads.
std::vector<dp_config> make_configs(int n, int t, bool ddp) {
  std::vector<dp_config> cfgs;
  auto add = [&](std::string label, std::string what, bool is_ddp, int replicas, int threads) {
    auto& c = cfgs.emplace_back();
    c.label = std::move(label);
    c.what = std::move(what);
    c.ddp = is_ddp;
    c.replicas = replicas;
    c.threads = threads;
  };
  const auto ns = std::to_string(n);
  add("troupe 1x" + std::to_string(t), "troupe, 1 replica x " + threads_text(t), false, 1, t);
  add("troupe 1x" + std::to_string(n * t), "troupe, 1 replica x " + threads_text(n * t), false, 1,
      n * t);
  add("troupe " + ns + "x" + std::to_string(t),
      "troupe --dp " + ns + ", " + ns + " replicas x " + threads_text(t), false, n, n * t);
  if (ddp)
    add("DDP " + ns + "x" + std::to_string(t),
        "PyTorch DDP (gloo), " + ns + " processes x " + threads_text(t), true, n, t);
  // Last in the JSON (rows keep their places), first on the printed rows.
  add("indep " + ns + "x" + std::to_string(t),
      ns + " independent troupe processes x 1 replica x " + threads_text(t) +
          ", the per-replica batch each, one core each, no synchronisation (the dp bound)",
      false, n, t);
  cfgs.back().solo = true;
  return cfgs;
}

/// The printed order: the independent processes first, then the others as
/// they always were (their columns stay last).
std::vector<const dp_config*> shown(const std::vector<dp_config>& cfgs) {
  std::vector<const dp_config*> r;
  for (const auto& c : cfgs)
    if (c.solo)
      r.push_back(&c);
  for (const auto& c : cfgs)
    if (!c.solo)
      r.push_back(&c);
  return r;
}

/// What one run of the comparison needs besides the flags.
struct dp_run_context {
  caf::actor_system& sys;
  const bench_flags& f;
  std::optional<fs::path> script; ///< the DDP peer, when it runs
  fs::path init, dir;
  nlohmann::json ddp_last; ///< the DDP peer's latest report
};

/// Runs configuration `c` once (repeat `r`) and records its figures.
void run_config(dp_run_context& x, dp_config& c, int r) {
  const auto& f = x.f;
  if (c.solo) {
    auto s = run_independent(f, c.replicas, x.dir, r);
    c.samples_per_second.push_back(s.samples_per_second);
    c.step_ms.push_back(s.step_ms);
    c.compute_ms.push_back(s.compute_ms);
    c.runs.push_back({{"samples_per_second", s.samples_per_second},
                      {"step_ms", s.step_ms},
                      {"device_compute_ms_per_replica", s.compute_ms},
                      {"pinned_processes", s.pinned}});
  } else if (c.ddp) {
    x.ddp_last = run_ddp(f, *x.script, c.replicas, x.init, x.dir, r);
    const auto& d = x.ddp_last;
    auto sps = d.at("samples_per_second").get<double>();
    auto step = d.at("step_ms").at("median").get<double>();
    auto local = d.value("local_compute_ms", nlohmann::json());
    auto compute = local.is_object() ? local.at("median").get<double>() : 0.0;
    c.samples_per_second.push_back(sps);
    c.step_ms.push_back(1e3 * d.at("seconds").get<double>() / f.steps);
    c.compute_ms.push_back(compute);
    c.sync_ms.push_back(step - compute);
    c.runs.push_back(
        {{"samples_per_second", sps},
         {"step_ms", c.step_ms.back()},
         {"step_ms_median", step},
         {"local_compute_ms", compute},
         {"sync_ms", step - compute},
         {"exit_killed_ranks", d.value("exit_killed_ranks", nlohmann::json::array())}});
  } else {
    auto run = run_troupe(x.sys, f, c.replicas, c.threads);
    auto sps = static_cast<double>(f.batch) * run.steps_per_second;
    c.samples_per_second.push_back(sps);
    c.step_ms.push_back(run.step_ms);
    // The report sums the stages of every replica; one replica's share.
    c.compute_ms.push_back(run.compute_ms / c.replicas);
    c.runs.push_back({{"samples_per_second", sps},
                      {"step_ms", run.step_ms},
                      {"device_compute_ms_per_replica", c.compute_ms.back()}});
  }
}

/// Every configuration once per repeat, the order rotated, so that a drift
/// in machine load hits every configuration; prints samples/s per repeat.
void run_repeats(dp_run_context& x, std::vector<dp_config>& cfgs) {
  for (int r = 0; r < x.f.repeats; ++r) {
    for (std::size_t k = 0; k < cfgs.size(); ++k)
      run_config(x, cfgs[(k + static_cast<std::size_t>(r)) % cfgs.size()], r);
    std::printf("%-8d", r + 1);
    for (const auto* c : shown(cfgs))
      std::printf(" %12.0f", c->samples_per_second.back());
    std::printf("\n");
    std::fflush(stdout);
  }
}

void print_medians(const std::vector<dp_config>& cfgs) {
  std::printf("%s\n", std::string(8 + 13 * cfgs.size(), '-').c_str());
  auto line = [&](const char* name, auto get) {
    std::printf("%-8s", name);
    for (const auto* c : shown(cfgs))
      std::printf(" %12.0f", get(summary::of(c->samples_per_second)));
    std::printf("\n");
  };
  line("median", [](const summary& s) { return s.median; });
  line("min", [](const summary& s) { return s.min; });
  line("max", [](const summary& s) { return s.max; });
  std::printf("%-8s", "spread");
  for (const auto* c : shown(cfgs))
    std::printf(" %11.1f%%", summary::of(c->samples_per_second).spread_percent());
  std::printf("\n%-8s", "ms/step");
  for (const auto* c : shown(cfgs))
    std::printf(" %12.2f", summary::of(c->step_ms).median);
  std::printf("\n");
}

/// dp against one replica with as many threads per replica, with all the
/// threads, and against DDP; printed with their targets.
std::vector<dp_ratio> print_ratios(const std::vector<dp_config>& cfgs, int n, int t) {
  const std::string dp_name = "troupe dp" + std::to_string(n);
  auto ratio = [&](std::string name, std::size_t a, std::size_t b, double target) {
    return dp_ratio{std::move(name), target,
                    paired_ratio::of(cfgs[a].samples_per_second, cfgs[b].samples_per_second)};
  };
  std::vector<dp_ratio> ratios;
  ratios.push_back(ratio(dp_name + " / troupe 1 replica x " + threads_text(t), 2, 0, 0.9 * n));
  ratios.push_back(ratio(dp_name + " / troupe 1 replica x " + threads_text(n * t), 2, 1, 0));
  const bool ddp = cfgs.size() > 4;
  if (ddp) // issue 16: keep twice DDP's throughput (the data-parallel issue asked for more than 1)
    ratios.push_back(
        ratio(dp_name + " / PyTorch DDP " + std::to_string(n) + " processes", 2, 3, 2.0));
  ratios.push_back(ratio(dp_name + " / " + std::to_string(n) + " independent processes", 2,
                         cfgs.size() - 1, 0.9));
  std::printf("\nratios (of the medians; per-repeat range in brackets):\n");
  for (const auto& q : ratios) {
    std::printf("  %-48s %6.3f  [%.3f .. %.3f]", q.name.c_str(), q.value.of_medians,
                q.value.per_repeat.min, q.value.per_repeat.max);
    if (q.target > 0)
      std::printf("  target >= %.2f: %s", q.target,
                  q.value.of_medians >= q.target ? "met" : "NOT met");
    std::printf("\n");
  }
  if (!ddp)
    std::printf("  %-48s    n/a  (DDP peer skipped: see the note above)\n",
                (dp_name + " / PyTorch DDP").c_str());
  return ratios;
}

void print_per_step(const std::vector<dp_config>& cfgs) {
  std::printf("\nper step (medians; troupe's device compute is what its stages report, per "
              "replica):\n");
  for (const auto* cp : shown(cfgs)) {
    const auto& c = *cp;
    auto s = summary::of(c.step_ms).median;
    auto comp = summary::of(c.compute_ms).median;
    if (c.ddp)
      std::printf("  %-12s %8.2f ms = local compute %.2f ms (no_sync steps) + gradient sync "
                  "%.2f ms\n",
                  c.label.c_str(), s, comp, summary::of(c.sync_ms).median);
    else
      std::printf("  %-12s %8.2f ms = device compute %.2f ms + runtime (data, messages, "
                  "all-reduce) %.2f ms\n",
                  c.label.c_str(), s, comp, s - comp);
  }
}

/// Each replica's breakdown of the traced dp run.
void print_where(const traced_dp_run& traced, double step_ms) {
  std::printf("where the time goes (ms/step, %% of the step; a traced dp run after the repeats, "
              "untraced median %.3f ms):\n",
              step_ms);
  for (std::size_t k = 0; k < traced.replicas.size(); ++k)
    std::printf("  replica %zu (step %.3f ms): %s\n", k, 1e3 * traced.replicas[k].step,
                actors::to_text(traced.replicas[k]).c_str());
}

nlohmann::json where_json(const traced_dp_run& traced) {
  nlohmann::json r = nlohmann::json::array();
  for (const auto& b : traced.replicas)
    r.push_back(actors::to_json(b));
  return r;
}

nlohmann::json configs_json(const std::vector<dp_config>& cfgs) {
  nlohmann::json rows = nlohmann::json::array();
  for (const auto& c : cfgs)
    rows.push_back({{"label", c.label},
                    {"what", c.what},
                    {"framework", c.ddp ? "pytorch-ddp" : "troupe"},
                    {"independent_processes", c.solo},
                    {c.ddp ? "processes" : "replicas", c.replicas},
                    {c.ddp ? "threads_per_process" : "threads", c.threads},
                    {"samples_per_second", summary::of(c.samples_per_second).to_json()},
                    {"step_ms", summary::of(c.step_ms).to_json()},
                    {c.ddp ? "local_compute_ms" : "device_compute_ms_per_replica",
                     summary::of(c.compute_ms).to_json()},
                    {"sync_ms", c.ddp ? summary::of(c.sync_ms).to_json() : nlohmann::json()},
                    {"runs", c.runs}});
  return rows;
}

nlohmann::json ratios_json(const std::vector<dp_ratio>& ratios) {
  nlohmann::json rj = nlohmann::json::array();
  for (const auto& q : ratios)
    rj.push_back({{"name", q.name},
                  {"of_medians", q.value.of_medians},
                  {"per_repeat", q.value.per_repeat.to_json()},
                  {"target", q.target > 0 ? nlohmann::json(q.target) : nlohmann::json()},
                  {"met", q.target > 0 ? nlohmann::json(q.value.of_medians >= q.target)
                                       : nlohmann::json()}});
  return rj;
}

/// The DDP peer script if it can run here; else nullopt with `note` saying why.
std::optional<fs::path> usable_ddp_peer(const bench_flags& f, const fs::path& dir,
                                        std::string& note) {
  auto script = find_ddp_peer(f, note);
  if (script && f.model != "mlp") {
    script.reset();
    note = "the DDP peer implements only --model mlp";
  }
  if (script)
    if (auto why = ddp_unavailable(f, *script, dir)) {
      script.reset();
      note = *why;
    }
  return script;
}

void print_header(const bench_flags& f, const std::vector<dp_config>& cfgs,
                  const std::string& ddp_note, bool ddp) {
  std::printf("troupe bench train --dp %d: model %s, global batch %lld, %s lr %g, %lld timed "
              "steps after %lld warm-up, %d repeat(s), interleaved (order rotated per repeat)\n",
              f.dp, f.model.c_str(), static_cast<long long>(f.batch), f.optimizer.c_str(),
              static_cast<double>(f.lr), static_cast<long long>(f.steps),
              static_cast<long long>(f.warmup), f.repeats);
  for (const auto* c : shown(cfgs))
    std::printf("  %-12s %s\n", c->label.c_str(), c->what.c_str());
  if (!ddp)
    std::printf("note: %s; skipping the DDP peer\n", ddp_note.c_str());
  std::printf("\nsamples/s\n%-8s", "repeat");
  for (const auto* c : shown(cfgs))
    std::printf(" %12s", c->label.c_str());
  std::printf("\n");
  std::fflush(stdout);
}

} // namespace

/// troupe 1 replica x T and x N*T threads, N replicas x T threads each, and
/// PyTorch DDP N processes x T threads: same model, initial weights, MNIST,
/// global batch and optimizer, the repeats interleaved with the order
/// rotated, so that a drift in machine load hits every configuration.
int bench_train_dp(bench_flags f) {
  const int n = f.dp;
  const int t = f.threads;
  if (f.batch == 0)
    f.batch = 256;
  if (f.lr <= 0.f)
    f.lr = default_lr(f.optimizer);
  if (f.batch < n)
    throw runtime::input_error("--batch " + std::to_string(f.batch) + " is smaller than --dp " +
                               std::to_string(n) + ": a replica would get no samples");
  if (!fs::exists(f.data_dir))
    throw runtime::input_error("--data: no directory '" + f.data_dir + "'");

  runtime::temp_dir tmp{"troupe-bench-dp-"};
  auto init = tmp.path() / "init.safetensors";
  write_initial_params(f.model, f.seed, init);
  std::string ddp_note;
  auto script = usable_ddp_peer(f, tmp.path(), ddp_note);
  auto cfgs = make_configs(n, t, script.has_value());

  actors::system_config cfg;
  caf::actor_system sys{cfg};
  const double gflops = device_gemm_gflops(sys, t, f.gemm);
  const auto load_before = load_average();
  print_header(f, cfgs, ddp_note, script.has_value());
  dp_run_context x{sys, f, script, init, tmp.path(), {}};
  run_repeats(x, cfgs);
  print_medians(cfgs);
  auto ratios = print_ratios(cfgs, n, t);
  print_per_step(cfgs);
  const auto traced = run_traced_dp(sys, f, n, n * t, tmp.path() / "trace.json");
  print_where(traced, summary::of(cfgs[2].step_ms).median);

  const auto& ddp_last = x.ddp_last;
  std::printf("GEMM on a device actor (%s, 256x1024x1024): %.1f GFLOP/s\n", threads_text(t).c_str(),
              gflops);
  auto our_blas = troupe_blas(t, f.gemm);
  std::printf("BLAS troupe: %s\n", our_blas.c_str());
  if (ddp_last.is_object())
    std::printf("BLAS DDP:    %s  %s (torch %s)\n", ddp_last.value("blas", "?").c_str(),
                ddp_last.value("openblas", nlohmann::json()).dump().c_str(),
                ddp_last.value("torch_version", "?").c_str());
  const auto wake = runtime::measure_wake_latency();
  std::printf("%s: each hand-off between a device thread and a CAF worker costs one\n",
              runtime::to_text(wake).c_str());
  std::printf("env: %s; load average %s before, %s after\n", blas_env_text().c_str(),
              load_before.c_str(), load_average().c_str());
  std::printf("data: both read MNIST from %s (troupe through its data-loader actor, DDP slicing "
              "an in-memory copy per step)\n",
              f.data_dir.c_str());

  if (!f.json.empty()) {
    auto j = run_json(f);
    j.update({
        {"benchmark", "train-dp"},
        {"dp", n},
        {"threads_per_replica", t},
        {"bucket_mb", f.bucket_mb},
        {"allreduce", f.allreduce},
        {"configs", configs_json(cfgs)},
        {"ratios", ratios_json(ratios)},
        {"ddp_peer", script ? nlohmann::json(script->string()) : nlohmann::json()},
        {"ddp_note", ddp_note},
        {"ddp_last_report", ddp_last},
        {"where_the_time_goes", where_json(traced)},
        {"wake_latency", runtime::to_json(wake)},
        {"gemm_gflops", gflops},
        {"troupe_blas", our_blas},
        {"env", blas_env_json()},
        {"load_average_before", load_before},
        {"load_average", load_average()},
    });
    write_json_file(f.json, j);
  }
  return exit_ok;
}

} // namespace troupe::apps::train_bench
