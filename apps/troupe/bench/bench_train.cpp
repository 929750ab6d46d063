// `troupe bench train`: training-step throughput of troupe (the same
// supervisor, trainer, layer shards and device actors as `troupe train`)
// against the same model, initial weights, optimizer, batch and thread count
// in libtorch (the optional troupe_peer_libtorch executable), in one run with
// the repeats interleaved so that both sides see the same machine load. With
// --dp N: bench_train_dp.cpp.

#include "apps/troupe/bench/bench_train.hpp"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <caf/actor_system.hpp>
#include <nlohmann/json.hpp>

#include "actors/protocol/system_config.hpp"
#include "apps/troupe/bench/bench_train_job.hpp"
#include "apps/troupe/bench/bench_util.hpp"
#include "runtime/error.hpp"
#include "runtime/io/temp_dir.hpp"
#include "runtime/telemetry/wake_probe.hpp"

namespace troupe::apps {

namespace {

namespace fs = std::filesystem;
using namespace train_bench;

constexpr const char* peer_name = "troupe_peer_libtorch";
constexpr const char* peer_missing = "libtorch peer not built: scripts/bootstrap --peers";

/// Runs `argv` without a shell; returns its exit status and stdout (stderr is
/// inherited, so the peer's own errors reach the user).
struct run_result {
  int status = -1;
  std::string out;
};

run_result run_capture(const std::vector<std::string>& argv) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0)
    throw std::runtime_error(std::string{"pipe: "} + std::strerror(errno));
  std::vector<char*> args;
  for (const auto& a : argv)
    args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    throw std::runtime_error(std::string{"fork: "} + std::strerror(errno));
  }
  if (pid == 0) {
    ::dup2(fds[1], 1);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  ::close(fds[1]);
  run_result r;
  char buf[4096];
  for (;;) {
    auto n = ::read(fds[0], buf, sizeof buf);
    if (n > 0)
      r.out.append(buf, static_cast<std::size_t>(n));
    else if (n == 0 || errno != EINTR)
      break;
  }
  ::close(fds[0]);
  int ws = 0;
  while (::waitpid(pid, &ws, 0) < 0 && errno == EINTR) {
  }
  r.status = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + (WIFSIGNALED(ws) ? WTERMSIG(ws) : 0);
  return r;
}

/// Runs the peer once; returns its JSON report.
nlohmann::json run_peer(const fs::path& peer, const bench_flags& f, const fs::path& init) {
  auto r = run_capture({peer.string(), "--optimizer", f.optimizer, "--lr", number(f.lr), "--batch",
                        std::to_string(f.batch), "--threads", std::to_string(f.threads), "--warmup",
                        std::to_string(f.warmup), "--steps", std::to_string(f.steps), "--init",
                        init.string()});
  if (r.status != 0)
    throw std::runtime_error(peer.string() + " exited with status " + std::to_string(r.status));
  // The JSON is the last non-empty line (libtorch may print warnings first).
  auto line = last_line(r.out);
  if (line.empty())
    throw std::runtime_error(peer.string() + " printed nothing");
  try {
    auto j = nlohmann::json::parse(line);
    j.at("steps_per_second").get<double>();
    return j;
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(peer.string() + " printed no JSON report: " + e.what());
  }
}

/// The peer: an explicit --peer must exist; the default may be missing
/// (nullopt with `note` saying why).
std::optional<fs::path> find_peer(const bench_flags& f, std::string& note) {
  std::optional<fs::path> peer;
  if (!f.peer.empty()) {
    if (!is_executable(f.peer))
      throw runtime::input_error("--peer: '" + f.peer + "' is not an executable file");
    peer = fs::path{f.peer};
  } else if (auto p = next_to_self(peer_name); is_executable(p)) {
    peer = p;
  } else {
    note = peer_missing;
  }
  if (peer && f.model != "mlp") {
    peer.reset();
    note = "the libtorch peer implements only --model mlp";
  }
  return peer;
}

/// Each side's figures over the repeats.
struct train_figures {
  std::vector<troupe_run> ours;
  std::vector<double> ours_sps, theirs_sps, ratios;
  nlohmann::json peer_last; ///< the peer's latest report
  /// The GEMM-bound limit measured right after troupe's run in each repeat
  /// (so that both see the same load), in ms, and the last measurement.
  std::vector<double> limit_ms;
  gemm_limit limit;
};

/// troupe and the peer once per repeat, who goes first alternating so that
/// a drift in machine load hits both; prints each repeat's row.
train_figures run_repeats(caf::actor_system& sys, const bench_flags& f,
                          const std::optional<fs::path>& peer, const fs::path& init) {
  train_figures x;
  for (int r = 0; r < f.repeats; ++r) {
    std::optional<double> theirs;
    auto do_peer = [&] {
      x.peer_last = run_peer(*peer, f, init);
      theirs = x.peer_last.at("steps_per_second").get<double>();
    };
    if (peer && r % 2 == 1)
      do_peer();
    auto t = run_troupe(sys, f, 1, f.threads);
    x.limit = measure_gemm_limit(sys, f);
    x.limit_ms.push_back(1e3 * x.limit.pass_seconds);
    if (peer && r % 2 == 0)
      do_peer();
    x.ours.push_back(t);
    x.ours_sps.push_back(t.steps_per_second);
    if (theirs) {
      x.theirs_sps.push_back(*theirs);
      x.ratios.push_back(t.steps_per_second / *theirs);
      std::printf("%-8d %16.1f %18.1f %8.3f %14.3f %14.3f\n", r + 1, t.steps_per_second, *theirs,
                  x.ratios.back(), t.step_ms, t.compute_ms);
    } else {
      std::printf("%-8d %16.1f %18s %8s %14.3f %14.3f\n", r + 1, t.steps_per_second, "-", "-",
                  t.step_ms, t.compute_ms);
    }
    std::fflush(stdout);
  }
  return x;
}

/// troupe's step time split into device compute and runtime overhead.
struct step_split {
  summary step_ms, compute_ms, overhead_ms;
  explicit step_split(const std::vector<troupe_run>& ours) {
    std::vector<double> step, compute, overhead;
    for (const auto& t : ours) {
      step.push_back(t.step_ms);
      compute.push_back(t.compute_ms);
      overhead.push_back(t.step_ms - t.compute_ms);
    }
    step_ms = summary::of(step);
    compute_ms = summary::of(compute);
    overhead_ms = summary::of(overhead);
  }
};

/// The medians, ranges and ratio; returns the ratio of medians (nullopt
/// without the peer).
std::optional<double> print_summary(const train_figures& x, bool peer,
                                    const std::string& peer_note) {
  auto ts = summary::of(x.ours_sps);
  auto ls = summary::of(x.theirs_sps);
  auto rs = summary::of(x.ratios);
  auto row = [&](const char* name, double a, double b) {
    if (peer)
      std::printf("%-8s %16.1f %18.1f\n", name, a, b);
    else
      std::printf("%-8s %16.1f %18s\n", name, a, "-");
  };
  std::printf("%s\n", std::string(84, '-').c_str());
  row("median", ts.median, ls.median);
  row("min", ts.min, ls.min);
  row("max", ts.max, ls.max);
  if (peer)
    std::printf("%-8s %15.1f%% %17.1f%%\n", "spread", ts.spread_percent(), ls.spread_percent());
  else
    std::printf("%-8s %15.1f%% %18s\n", "spread", ts.spread_percent(), "-");

  std::optional<double> ratio;
  if (peer && ls.median > 0)
    ratio = ts.median / ls.median;
  std::printf("\nratio troupe/libtorch (medians): ");
  if (ratio)
    std::printf("%.3f  (per-repeat %.3f .. %.3f)\n", *ratio, rs.min, rs.max);
  else
    std::printf("n/a (%s)\n", peer_note.c_str());
  step_split s{x.ours};
  std::printf("troupe step: %.3f ms median = device compute %.3f ms + runtime overhead %.3f ms "
              "(%.1f%%; messages, data loader, actor hops)\n",
              s.step_ms.median, s.compute_ms.median, s.overhead_ms.median,
              100.0 * s.overhead_ms.median / std::max(1e-12, s.step_ms.median));
  return ratio;
}

/// The GEMM-bound limit of the repeats (the median of their measurements)
/// against troupe's step: of the medians, and per repeat.
struct limit_figures {
  gemm_limit limit;
  double step_ms = 0;
  paired_ratio of_limit; ///< minimum step / troupe's step

  explicit limit_figures(const train_figures& x) : limit{x.limit} {
    std::vector<double> steps;
    for (const auto& t : x.ours)
      steps.push_back(t.step_ms);
    step_ms = summary::of(steps).median;
    if (limit.pass_seconds <= 0)
      return;
    limit.pass_seconds = 1e-3 * summary::of(x.limit_ms).median;
    of_limit = paired_ratio::of(x.limit_ms, steps);
  }
};

/// The traced run's breakdown, and the step against its GEMM-bound limit.
void print_where_and_limit(const traced_run& traced, const limit_figures& l) {
  const auto& g = l.limit;
  const double step_ms = l.step_ms;
  std::printf("where the time goes (ms/step, %% of the step; a traced run after the repeats, step "
              "%.3f ms, untraced median %.3f ms): %s\n",
              1e3 * traced.breakdown.step, step_ms, actors::to_text(traced.breakdown).c_str());
  if (g.pass_seconds <= 0) {
    std::printf(
        "GEMM-bound limit: n/a (the model's GEMMs are not counted: %zu uncounted layer(s))\n",
        g.gemms.uncounted.size());
    return;
  }
  std::printf("GEMM-bound limit (%d BLAS thread(s)): %.4f GFLOP/step in %zu sgemm calls (forward, "
              "weight and input gradients), BLAS %.1f GFLOP/s on those shapes -> minimum step "
              "%.3f ms (median of one measurement beside each repeat); troupe's step %.3f ms = "
              "%.1f%% of the limit (per repeat %.1f .. %.1f%%; target >= 85%%)%s\n",
              g.threads, 1e-9 * g.gemms.flops(), g.gemms.calls.size(), g.gflops(),
              1e3 * g.pass_seconds, step_ms, 100.0 * l.of_limit.of_medians,
              100.0 * l.of_limit.per_repeat.min, 100.0 * l.of_limit.per_repeat.max,
              g.gemms.uncounted.empty() ? "" : "; partial: conv/attention GEMMs not counted");
}

nlohmann::json limit_json(const limit_figures& l) {
  const auto& g = l.limit;
  nlohmann::json uncounted = g.gemms.uncounted;
  const bool measured = g.pass_seconds > 0;
  const double min_ms = 1e3 * g.pass_seconds;
  const double step_ms = l.step_ms;
  return {{"gemm_flops_per_step", g.gemms.flops()},
          {"gemm_calls_per_step", g.gemms.calls.size()},
          {"uncounted_layers", uncounted},
          {"threads", g.threads},
          {"blas_gflops_on_step_shapes", measured ? nlohmann::json(g.gflops()) : nlohmann::json()},
          {"min_step_ms", measured ? nlohmann::json(min_ms) : nlohmann::json()},
          {"troupe_step_ms", step_ms},
          {"percent_of_limit",
           measured ? nlohmann::json(100.0 * l.of_limit.of_medians) : nlohmann::json()},
          {"percent_of_limit_per_repeat",
           measured ? nlohmann::json{{"min", 100.0 * l.of_limit.per_repeat.min},
                                     {"median", 100.0 * l.of_limit.per_repeat.median},
                                     {"max", 100.0 * l.of_limit.per_repeat.max}}
                    : nlohmann::json()},
          {"target_percent", 85}};
}

void print_machine(const bench_flags& f, double gflops, const std::string& our_blas,
                   const nlohmann::json& peer_last, const runtime::wake_latency& wake) {
  std::printf("GEMM on a device actor (%d BLAS thread(s), 256x1024x1024): %.1f GFLOP/s\n",
              f.threads, gflops);
  std::string their_blas = peer_last.is_object() ? peer_last.value("blas", "?") : "-";
  std::printf("BLAS troupe:   %s\n", our_blas.c_str());
  std::printf("BLAS libtorch: %s", their_blas.c_str());
  if (peer_last.is_object() && peer_last.contains("openblas"))
    std::printf("  %s", peer_last.at("openblas").dump().c_str());
  std::printf("\n%s: a step's hand-offs between the device thread and CAF workers cost one "
              "each\n",
              runtime::to_text(wake).c_str());
  std::printf("env: %s; load average %s\n", blas_env_text().c_str(), load_average().c_str());
  std::printf("data: troupe reads MNIST through its data-loader actor; the peer trains on "
              "synthetic batches held in memory\n");
}

/// What the JSON report needs besides the flags.
struct train_report {
  const train_figures& x;
  const std::optional<fs::path>& peer;
  const std::string& peer_note;
  std::optional<double> ratio;
  double gflops = 0;
  std::string our_blas;
  const traced_run& traced;
  const limit_figures& limit;
  runtime::wake_latency wake;
};

nlohmann::json report_json(const bench_flags& f, const train_report& r) {
  const auto& x = r.x;
  const auto& ours = x.ours;
  const auto& theirs_sps = x.theirs_sps;
  const auto& peer_last = x.peer_last;
  const auto& peer = r.peer;
  auto ts = summary::of(x.ours_sps);
  auto ls = summary::of(theirs_sps);
  auto rs = summary::of(x.ratios);
  step_split s{ours};
  std::string their_blas = peer_last.is_object() ? peer_last.value("blas", "?") : "-";
  nlohmann::json runs = nlohmann::json::array();
  for (std::size_t i = 0; i < ours.size(); ++i)
    runs.push_back({{"troupe_steps_per_second", ours[i].steps_per_second},
                    {"libtorch_steps_per_second",
                     i < theirs_sps.size() ? nlohmann::json(theirs_sps[i]) : nlohmann::json()},
                    {"troupe_step_ms", ours[i].step_ms},
                    {"troupe_device_compute_ms", ours[i].compute_ms}});
  auto j = run_json(f);
  j.update({
      {"benchmark", "train"},
      {"threads", f.threads},
      {"troupe_steps_per_second", ts.median},
      {"libtorch_steps_per_second", peer ? nlohmann::json(ls.median) : nlohmann::json()},
      {"ratio", r.ratio ? nlohmann::json(*r.ratio) : nlohmann::json()},
      {"troupe", ts.to_json()},
      {"libtorch", peer ? ls.to_json() : nlohmann::json()},
      {"ratio_per_repeat", peer ? rs.to_json() : nlohmann::json()},
      {"troupe_step_ms", s.step_ms.to_json()},
      {"troupe_device_compute_ms", s.compute_ms.to_json()},
      {"troupe_overhead_ms", s.overhead_ms.to_json()},
      {"runs", runs},
      {"gemm_gflops", r.gflops},
      {"gemm_shape", "256x1024x1024"},
      {"troupe_blas", r.our_blas},
      {"libtorch_blas", peer_last.is_object() ? nlohmann::json(their_blas) : nlohmann::json()},
      {"libtorch_openblas",
       peer_last.is_object() ? peer_last.value("openblas", nlohmann::json()) : nlohmann::json()},
      {"libtorch_version", peer_last.is_object()
                               ? peer_last.value("torch_version", nlohmann::json())
                               : nlohmann::json()},
      {"peer", peer ? nlohmann::json(peer->string()) : nlohmann::json()},
      {"peer_note", r.peer_note},
      {"env", blas_env_json()},
      {"load_average", load_average()},
      {"where_the_time_goes", actors::to_json(r.traced.breakdown)},
      {"where_the_time_goes_traced_step_ms", r.traced.run.step_ms},
      {"gemm_bound", limit_json(r.limit)},
      {"wake_latency", runtime::to_json(r.wake)},
  });
  return j;
}

int bench_train(bench_flags f) {
  if (!f.solo_json.empty())
    return bench_train_solo(f);
  if (f.dp > 1)
    return bench_train_dp(std::move(f));
  if (f.batch == 0)
    f.batch = 64;
  if (f.lr <= 0.f)
    f.lr = default_lr(f.optimizer);
  if (!fs::exists(f.data_dir))
    throw runtime::input_error("--data: no directory '" + f.data_dir + "'");
  std::string peer_note;
  auto peer = find_peer(f, peer_note);

  runtime::temp_dir tmp{"troupe-bench-"};
  auto init = tmp.path() / "init.safetensors";
  write_initial_params(f.model, f.seed, init);

  actors::system_config cfg;
  caf::actor_system sys{cfg};
  const double gflops = device_gemm_gflops(sys, f.threads, f.gemm);

  std::printf("troupe bench train: model %s, batch %lld, %s lr %g, %d thread(s), %lld timed steps "
              "after %lld warm-up, %d repeat(s), interleaved\n",
              f.model.c_str(), static_cast<long long>(f.batch), f.optimizer.c_str(),
              static_cast<double>(f.lr), f.threads, static_cast<long long>(f.steps),
              static_cast<long long>(f.warmup), f.repeats);
  if (!peer)
    std::printf("note: %s; reporting troupe alone\n", peer_note.c_str());
  std::printf("\n%-8s %16s %18s %8s %14s %14s\n", "repeat", "troupe steps/s", "libtorch steps/s",
              "ratio", "troupe ms/step", "device ms/step");
  std::fflush(stdout);
  auto x = run_repeats(sys, f, peer, init);
  auto ratio = print_summary(x, peer.has_value(), peer_note);
  const auto traced = run_traced(sys, f, tmp.path() / "trace.json");
  const limit_figures limit{x};
  print_where_and_limit(traced, limit);
  auto our_blas = troupe_blas(f.threads, f.gemm);
  const auto wake = runtime::measure_wake_latency();
  print_machine(f, gflops, our_blas, x.peer_last, wake);
  if (!f.json.empty())
    write_json_file(
        f.json, report_json(f, {x, peer, peer_note, ratio, gflops, our_blas, traced, limit, wake}));
  return exit_ok;
}

void add_train_flags(CLI::App* train, bench_flags& f) {
  train->add_option("--model", f.model, "zoo model (the libtorch peer knows only mlp)")
      ->check(CLI::IsMember({"mlp", "cnn"}))
      ->capture_default_str();
  train->add_option("--batch", f.batch, "global batch size (default: 64; 256 with --dp)")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1} << 20));
  train
      ->add_option("--threads", f.threads,
                   "compute threads on each side (with --dp: per replica and per DDP process)")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  train
      ->add_option_function<std::string>(
          "--gemm", [&f](const std::string& s) { f.gemm = kernels::cpu::parse_gemm_backend(s); },
          "troupe's GEMM library: auto (default: oneDNN with 1 thread per device, else OpenBLAS) | "
          "openblas | onednn")
      ->check(CLI::IsMember({"auto", "openblas", "onednn"}));
  train->add_option("--optimizer", f.optimizer, "sgd | adam")
      ->check(CLI::IsMember({"sgd", "adam"}))
      ->capture_default_str();
  train->add_option("--lr", f.lr, "learning rate (default: sgd 0.01, adam 0.001)")
      ->check(CLI::Range(1e-12, 100.0));
  train->add_option("--steps", f.steps, "timed steps per repeat")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{10000000}))
      ->capture_default_str();
  train->add_option("--warmup", f.warmup, "untimed steps before them")
      ->check(CLI::Range(std::int64_t{0}, std::int64_t{10000000}))
      ->capture_default_str();
  train->add_option("--repeats", f.repeats, "repeats, troupe and libtorch interleaved")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  train->add_option("--seed", f.seed, "seed of the initial weights")->capture_default_str();
  train->add_option("--data", f.data_dir, "MNIST directory (troupe's data loader)")
      ->capture_default_str();
  train->add_option("--json", f.json, "also write the figures as JSON to FILE");
  train->add_option("--peer", f.peer,
                    std::string{"the libtorch peer (default: "} + peer_name +
                        " next to this executable)");
  train
      ->add_option("--dp", f.dp,
                   "data parallelism: compare troupe --dp N (N replicas) with 1 replica on 1x "
                   "and Nx the threads and with PyTorch DDP (gloo), N processes")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  train
      ->add_option("--bucket-mb", f.bucket_mb,
                   "with --dp: gradient all-reduce bucket size in MiB (troupe and DDP; 0: troupe "
                   "all-reduces once after backward, DDP gets 1024)")
      ->check(CLI::Range(0.0, 1e6))
      ->capture_default_str();
  train
      ->add_option("--allreduce", f.allreduce,
                   "with --dp: troupe's all-reduce (auto | ring | tree)")
      ->check(CLI::IsMember({"auto", "ring", "tree"}))
      ->capture_default_str();
  train->add_option("--ddp-peer", f.ddp_peer,
                    std::string{"with --dp: the DDP peer script (default: "} + ddp_peer_name +
                        " next to this executable, else ./" + ddp_peer_source + ")");
  train->add_option("--python", f.python, "with --dp: the interpreter with python3-torch")
      ->capture_default_str();
  train
      ->add_option("--peer-timeout", f.peer_timeout,
                   "with --dp: seconds one DDP run may take before it is killed")
      ->check(CLI::Range(1.0, 86400.0))
      ->capture_default_str();
  train
      ->add_flag("--pin-cores,!--no-pin-cores", f.pin_cores,
                 "troupe: pin each device (replica) to cores of its own (train --pin-cores)")
      ->capture_default_str();
  // --dp's independent processes re-run this command with these (hidden).
  train->add_option("--solo-json", f.solo_json)->group("");
  train->add_option("--solo-core", f.solo_core)->group("");
}

} // namespace

command_action add_bench_train_command(CLI::App& bench) {
  auto* train = bench.add_subcommand(
      "train",
      "training steps/s of troupe vs libtorch (same model, init, optimizer, batch, threads)");
  auto f = std::make_shared<bench_flags>();
  add_train_flags(train, *f);
  return [f] { return bench_train(*f); };
}

} // namespace troupe::apps
