// `troupe bench train`: training-step throughput of troupe (the same
// supervisor, trainer, layer shards and device actors as `troupe train`)
// against the same model, initial weights, optimizer, batch and thread count
// in libtorch (the optional troupe_peer_libtorch executable), in one run with
// the repeats interleaved so that both sides see the same machine load. With
// --dp N: troupe's data parallelism (N replicas) against one replica and
// against PyTorch DDP over gloo (bench/peers/ddp_mlp.py, N processes).

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/scoped_actor.hpp>
#include <nlohmann/json.hpp>

#include "actors/pipeline/device_actor.hpp"
#include "actors/cluster/job.hpp"
#include "apps/troupe/bench/bench_allreduce.hpp"
#include "apps/troupe/bench/bench_pipeline.hpp"
#include "apps/troupe/bench/bench_ps.hpp"
#include "apps/troupe/bench/bench_transport.hpp"
#include "apps/troupe/bench/bench_util.hpp"
#include "apps/troupe/child_process.hpp"
#include "apps/troupe/commands.hpp"
#include "kernels/cpu/gemm.hpp"
#include "models/layers/sequential.hpp"
#include "models/zoo.hpp"
#include "runtime/error.hpp"
#include "runtime/net/messages.hpp"
#include "runtime/io/safetensors.hpp"
#include "runtime/net/system_config.hpp"
#include "runtime/io/temp_dir.hpp"

namespace troupe::apps {

namespace {

namespace fs = std::filesystem;

constexpr const char* peer_name = "troupe_peer_libtorch";
constexpr const char* peer_missing = "libtorch peer not built: scripts/bootstrap --peers";
/// The PyTorch DDP peer (bench/peers/ddp_mlp.py), copied next to this
/// executable by bench/peers/CMakeLists.txt.
constexpr const char* ddp_peer_name = "troupe_peer_ddp.py";
constexpr const char* ddp_peer_source = "bench/peers/ddp_mlp.py";

struct bench_flags {
  std::string model = "mlp";
  std::int64_t batch = 0; ///< 0: 64, or 256 with --dp
  int threads = 1;        ///< with --dp: per replica (troupe) and per process (DDP)
  int dp = 1;             ///< > 1: the data-parallel comparison (bench_train_dp)
  double bucket_mb = 25;  ///< --dp: gradient bucket size, troupe and DDP alike
  std::string allreduce = "auto";
  std::string ddp_peer; ///< empty: next to this executable, else ddp_peer_source
  std::string python = "/usr/bin/python3";
  double peer_timeout = 300; ///< seconds one DDP run may take before it is killed
  std::string optimizer = "sgd";
  float lr = 0.f; ///< 0: the optimizer's usual default (sgd 0.01, adam 1e-3)
  std::int64_t steps = 200;
  std::int64_t warmup = 20;
  int repeats = 5;
  std::uint64_t seed = 0;
  std::string data_dir = "data/mnist";
  std::string json;
  std::string peer;
};

std::string env_or_unset(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "(unset)";
}

/// The peer next to this executable (build/bin/troupe -> build/bin/troupe_peer_libtorch).
fs::path default_peer_path() {
  std::error_code ec;
  auto self = fs::read_symlink("/proc/self/exe", ec);
  if (ec)
    return peer_name;
  return self.parent_path() / peer_name;
}

bool is_executable(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec) && ::access(p.c_str(), X_OK) == 0;
}

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

/// Writes the parameters troupe's layer shards start from (same spec, seed and
/// global names) so the peer starts from identical weights.
void write_initial_params(const std::string& model, std::uint64_t seed, const fs::path& file) {
  auto spec = models::zoo_model(model);
  models::sequential net{models::instantiate(spec, 0, spec.layers.size(), seed)};
  std::vector<std::pair<std::string, runtime::tensor>> params;
  for (auto* p : net.parameters())
    params.emplace_back(p->name, p->value);
  runtime::write_safetensors(file, params, {{"source", "troupe bench train"}});
}

/// sgemm GFLOP/s as a device actor with `threads` BLAS threads measures it.
double device_gemm_gflops(caf::actor_system& sys, int threads) {
  auto dev = actors::spawn_device(sys, {"cpu:bench", runtime::device::cpu(), threads});
  caf::scoped_actor self{sys};
  double gflops = 0;
  self->request(dev, caf::infinite, runtime::measure_atom::value)
    .receive([&](double g) { gflops = g; },
             [&](caf::error& err) { throw std::runtime_error("GEMM measurement: " + sys.render(err)); });
  self->send_exit(dev, caf::exit_reason::user_shutdown);
  return gflops;
}

/// One troupe repeat's figures.
struct troupe_run {
  double steps_per_second = 0;
  double step_ms = 0;
  double compute_ms = 0; ///< device compute per step, as the stage reports
};

/// One `troupe train` job of the bench: `dp` replicas sharing `threads` in all.
troupe_run run_troupe(caf::actor_system& sys, const bench_flags& f, int dp, int threads) {
  actors::train_options o;
  o.model = f.model;
  o.data_dir = f.data_dir;
  o.batch = f.batch;
  o.optimizer = f.optimizer;
  o.lr = f.lr;
  o.seed = f.seed;
  o.threads = threads;
  o.stages = 1;
  o.dp = dp;
  o.bucket_bytes = static_cast<std::int64_t>(f.bucket_mb * 1024.0 * 1024.0);
  o.allreduce = f.allreduce;
  o.max_steps = f.warmup + f.steps;
  o.timing_warmup = f.warmup;
  o.evaluate = false;
  o.progress = false;
  auto r = actors::run_training(sys, o).report;
  // A build that accepts --dp but plans fewer replicas would be measured as
  // something it is not.
  auto replicas = r.at("plan").value("replicas", 1);
  if (replicas != dp)
    throw std::runtime_error("troupe planned " + std::to_string(replicas) + " replica(s) for dp " +
                             std::to_string(dp) +
                             " (data parallelism not available in this build?)");
  troupe_run t;
  auto steps = r.at("timed_steps").get<double>();
  auto secs = r.at("timed_seconds").get<double>();
  if (steps < 1 || secs <= 0)
    throw std::runtime_error("troupe job ran no timed steps");
  t.steps_per_second = steps / secs;
  t.step_ms = 1e3 * secs / steps;
  t.compute_ms = 1e3 * r.at("timed_device_compute_seconds").get<double>() / steps;
  return t;
}

/// Runs the peer once; returns its JSON report.
nlohmann::json run_peer(const fs::path& peer, const bench_flags& f, const fs::path& init) {
  char lr[64];
  std::snprintf(lr, sizeof lr, "%.9g", static_cast<double>(f.lr));
  auto r = run_capture({peer.string(), "--optimizer", f.optimizer, "--lr", lr, "--batch",
                        std::to_string(f.batch), "--threads", std::to_string(f.threads),
                        "--warmup", std::to_string(f.warmup), "--steps",
                        std::to_string(f.steps), "--init", init.string()});
  if (r.status != 0)
    throw std::runtime_error(peer.string() + " exited with status " + std::to_string(r.status));
  // The JSON is the last non-empty line (libtorch may print warnings first).
  auto end = r.out.find_last_not_of(" \n\r\t");
  if (end == std::string::npos)
    throw std::runtime_error(peer.string() + " printed nothing");
  auto begin = r.out.rfind('\n', end);
  auto line = r.out.substr(begin == std::string::npos ? 0 : begin + 1, end + 1 - (begin == std::string::npos ? 0 : begin + 1));
  try {
    auto j = nlohmann::json::parse(line);
    j.at("steps_per_second").get<double>();
    return j;
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(peer.string() + " printed no JSON report: " + e.what());
  }
}

// ---- `troupe bench train --dp N`: data parallelism against PyTorch DDP ----

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
  auto self = fs::read_symlink("/proc/self/exe", ec);
  if (!ec && fs::is_regular_file(self.parent_path() / ddp_peer_name, ec))
    return self.parent_path() / ddp_peer_name;
  if (fs::is_regular_file(ddp_peer_source, ec))
    return fs::path{ddp_peer_source};
  why = std::string{"DDP peer script not found ("} + ddp_peer_name +
        " next to this executable, or ./" + ddp_peer_source + "; --ddp-peer FILE)";
  return std::nullopt;
}

/// The last non-empty line of a file (a peer's final error message).
std::string last_line_of(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  auto end = text.find_last_not_of(" \n\r\t");
  if (end == std::string::npos)
    return "(no output)";
  auto begin = text.rfind('\n', end);
  begin = begin == std::string::npos ? 0 : begin + 1;
  return text.substr(begin, end + 1 - begin);
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
  char lr[64], bucket[64], timeout[64];
  std::snprintf(lr, sizeof lr, "%.9g", static_cast<double>(f.lr));
  // troupe's 0 means one bucket after backward; DDP's nearest is one bucket as
  // large as the model (it still cuts its first bucket at 1 MiB).
  std::snprintf(bucket, sizeof bucket, "%.9g", f.bucket_mb > 0 ? f.bucket_mb : 1024.0);
  // The peer's own deadline comes first, so that it reports and cleans up.
  std::snprintf(timeout, sizeof timeout, "%.9g", f.peer_timeout);
  int st = run_ddp_script(f, script, {"--world",     std::to_string(world),
                                      "--threads",   std::to_string(f.threads),
                                      "--batch",     std::to_string(f.batch),
                                      "--optimizer", f.optimizer,
                                      "--lr",        lr,
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
  int replicas = 1; ///< troupe replicas, or DDP processes
  int threads = 1;  ///< troupe: threads in all; DDP: per process
  std::vector<double> samples_per_second, step_ms, compute_ms, sync_ms;
  nlohmann::json runs = nlohmann::json::array();
};

/// The ratio a / b of two configurations: of the medians, and per repeat
/// (both measured in the same repeat, so under the same load).
struct dp_ratio {
  std::string name;
  double target = 0; ///< met when the ratio of medians is >= this (0: no target)
  double of_medians = 0;
  summary per_repeat;
};

dp_ratio ratio_of(std::string name, const dp_config& a, const dp_config& b, double target) {
  dp_ratio r{std::move(name), target, 0, {}};
  auto ma = summary::of(a.samples_per_second).median;
  auto mb = summary::of(b.samples_per_second).median;
  r.of_medians = mb > 0 ? ma / mb : 0;
  std::vector<double> each;
  for (std::size_t i = 0; i < std::min(a.samples_per_second.size(), b.samples_per_second.size());
       ++i)
    each.push_back(a.samples_per_second[i] / b.samples_per_second[i]);
  r.per_repeat = summary::of(each);
  return r;
}

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
    f.lr = f.optimizer == "sgd" ? 0.01f : 1e-3f;
  if (f.batch < n)
    throw runtime::input_error("--batch " + std::to_string(f.batch) + " is smaller than --dp " +
                               std::to_string(n) + ": a replica would get no samples");
  if (!fs::exists(f.data_dir))
    throw runtime::input_error("--data: no directory '" + f.data_dir + "'");

  runtime::temp_dir tmp{"troupe-bench-dp-"};
  auto init = tmp.path() / "init.safetensors";
  write_initial_params(f.model, f.seed, init);

  std::string ddp_note;
  auto script = find_ddp_peer(f, ddp_note);
  if (script && f.model != "mlp") {
    script.reset();
    ddp_note = "the DDP peer implements only --model mlp";
  }
  if (script)
    if (auto why = ddp_unavailable(f, *script, tmp.path())) {
      script.reset();
      ddp_note = *why;
    }

  auto threads_text = [](int k) { return std::to_string(k) + (k == 1 ? " thread" : " threads"); };
  std::vector<dp_config> cfgs;
  auto add = [&](std::string label, std::string what, bool ddp, int replicas, int threads) {
    auto& c = cfgs.emplace_back();
    c.label = std::move(label);
    c.what = std::move(what);
    c.ddp = ddp;
    c.replicas = replicas;
    c.threads = threads;
  };
  const auto ns = std::to_string(n);
  add("troupe 1x" + std::to_string(t), "troupe, 1 replica x " + threads_text(t), false, 1, t);
  add("troupe 1x" + std::to_string(n * t), "troupe, 1 replica x " + threads_text(n * t), false, 1,
      n * t);
  add("troupe " + ns + "x" + std::to_string(t),
      "troupe --dp " + ns + ", " + ns + " replicas x " + threads_text(t), false, n, n * t);
  if (script)
    add("DDP " + ns + "x" + std::to_string(t),
        "PyTorch DDP (gloo), " + ns + " processes x " + threads_text(t), true, n, t);
  auto& one = cfgs[0];
  auto& wide = cfgs[1];
  auto& dp = cfgs[2];

  runtime::system_config cfg;
  caf::actor_system sys{cfg};
  const double gflops = device_gemm_gflops(sys, t);
  const auto load_before = load_average();

  std::printf("troupe bench train --dp %d: model %s, global batch %lld, %s lr %g, %lld timed "
              "steps after %lld warm-up, %d repeat(s), interleaved (order rotated per repeat)\n",
              n, f.model.c_str(), static_cast<long long>(f.batch), f.optimizer.c_str(),
              static_cast<double>(f.lr), static_cast<long long>(f.steps),
              static_cast<long long>(f.warmup), f.repeats);
  for (const auto& c : cfgs)
    std::printf("  %-12s %s\n", c.label.c_str(), c.what.c_str());
  if (!script)
    std::printf("note: %s; skipping the DDP peer\n", ddp_note.c_str());
  std::printf("\nsamples/s\n%-8s", "repeat");
  for (const auto& c : cfgs)
    std::printf(" %12s", c.label.c_str());
  std::printf("\n");
  std::fflush(stdout);

  nlohmann::json ddp_last;
  for (int r = 0; r < f.repeats; ++r) {
    for (std::size_t k = 0; k < cfgs.size(); ++k) {
      auto& c = cfgs[(k + static_cast<std::size_t>(r)) % cfgs.size()];
      if (c.ddp) {
        ddp_last = run_ddp(f, *script, c.replicas, init, tmp.path(), r);
        auto sps = ddp_last.at("samples_per_second").get<double>();
        auto step = ddp_last.at("step_ms").at("median").get<double>();
        auto local = ddp_last.value("local_compute_ms", nlohmann::json());
        auto compute = local.is_object() ? local.at("median").get<double>() : 0.0;
        c.samples_per_second.push_back(sps);
        c.step_ms.push_back(1e3 * ddp_last.at("seconds").get<double>() / f.steps);
        c.compute_ms.push_back(compute);
        c.sync_ms.push_back(step - compute);
        c.runs.push_back(
            {{"samples_per_second", sps},
             {"step_ms", c.step_ms.back()},
             {"step_ms_median", step},
             {"local_compute_ms", compute},
             {"sync_ms", step - compute},
             {"exit_killed_ranks", ddp_last.value("exit_killed_ranks", nlohmann::json::array())}});
      } else {
        auto run = run_troupe(sys, f, c.replicas, c.threads);
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
    std::printf("%-8d", r + 1);
    for (const auto& c : cfgs)
      std::printf(" %12.0f", c.samples_per_second.back());
    std::printf("\n");
    std::fflush(stdout);
  }

  std::printf("%s\n", std::string(8 + 13 * cfgs.size(), '-').c_str());
  auto line = [&](const char* name, auto get) {
    std::printf("%-8s", name);
    for (const auto& c : cfgs)
      std::printf(" %12.0f", get(summary::of(c.samples_per_second)));
    std::printf("\n");
  };
  line("median", [](const summary& s) { return s.median; });
  line("min", [](const summary& s) { return s.min; });
  line("max", [](const summary& s) { return s.max; });
  std::printf("%-8s", "spread");
  for (const auto& c : cfgs)
    std::printf(" %11.1f%%", summary::of(c.samples_per_second).spread_percent());
  std::printf("\n%-8s", "ms/step");
  for (const auto& c : cfgs)
    std::printf(" %12.2f", summary::of(c.step_ms).median);
  std::printf("\n");

  const std::string dp_name = "troupe dp" + std::to_string(n);
  std::vector<dp_ratio> ratios;
  ratios.push_back(
      ratio_of(dp_name + " / troupe 1 replica x " + threads_text(t), dp, one, 0.9 * n));
  ratios.push_back(ratio_of(dp_name + " / troupe 1 replica x " + threads_text(n * t), dp, wide, 0));
  if (script)
    ratios.push_back(
        ratio_of(dp_name + " / PyTorch DDP " + std::to_string(n) + " processes", dp, cfgs[3], 1.0));
  std::printf("\nratios (of the medians; per-repeat range in brackets):\n");
  for (const auto& q : ratios) {
    std::printf("  %-48s %6.3f  [%.3f .. %.3f]", q.name.c_str(), q.of_medians, q.per_repeat.min,
                q.per_repeat.max);
    if (q.target > 0)
      std::printf("  target >= %.2f: %s", q.target, q.of_medians >= q.target ? "met" : "NOT met");
    std::printf("\n");
  }
  if (!script)
    std::printf("  %-48s    n/a  (DDP peer skipped: see the note above)\n",
                (dp_name + " / PyTorch DDP").c_str());

  std::printf("\nper step (medians; troupe's device compute is what its stages report, per "
              "replica):\n");
  for (const auto& c : cfgs) {
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
  std::printf("GEMM on a device actor (%s, 256x1024x1024): %.1f GFLOP/s\n", threads_text(t).c_str(),
              gflops);
  kernels::cpu::set_blas_threads_for_this_thread(t);
  auto our_blas = kernels::cpu::blas_description();
  std::printf("BLAS troupe: %s\n", our_blas.c_str());
  if (ddp_last.is_object())
    std::printf("BLAS DDP:    %s  %s (torch %s)\n", ddp_last.value("blas", "?").c_str(),
                ddp_last.value("openblas", nlohmann::json()).dump().c_str(),
                ddp_last.value("torch_version", "?").c_str());
  std::printf("env: OPENBLAS_CORETYPE=%s OPENBLAS_L2_SIZE=%s OMP_NUM_THREADS=%s; load average "
              "%s before, %s after\n",
              env_or_unset("OPENBLAS_CORETYPE").c_str(), env_or_unset("OPENBLAS_L2_SIZE").c_str(),
              env_or_unset("OMP_NUM_THREADS").c_str(), load_before.c_str(), load_average().c_str());
  std::printf("data: both read MNIST from %s (troupe through its data-loader actor, DDP slicing "
              "an in-memory copy per step)\n",
              f.data_dir.c_str());

  if (!f.json.empty()) {
    nlohmann::json rows = nlohmann::json::array();
    for (const auto& c : cfgs)
      rows.push_back({{"label", c.label},
                      {"what", c.what},
                      {"framework", c.ddp ? "pytorch-ddp" : "troupe"},
                      {c.ddp ? "processes" : "replicas", c.replicas},
                      {c.ddp ? "threads_per_process" : "threads", c.threads},
                      {"samples_per_second", summary::of(c.samples_per_second).to_json()},
                      {"step_ms", summary::of(c.step_ms).to_json()},
                      {c.ddp ? "local_compute_ms" : "device_compute_ms_per_replica",
                       summary::of(c.compute_ms).to_json()},
                      {"sync_ms", c.ddp ? summary::of(c.sync_ms).to_json() : nlohmann::json()},
                      {"runs", c.runs}});
    nlohmann::json rj = nlohmann::json::array();
    for (const auto& q : ratios)
      rj.push_back(
          {{"name", q.name},
           {"of_medians", q.of_medians},
           {"per_repeat", q.per_repeat.to_json()},
           {"target", q.target > 0 ? nlohmann::json(q.target) : nlohmann::json()},
           {"met", q.target > 0 ? nlohmann::json(q.of_medians >= q.target) : nlohmann::json()}});
    nlohmann::json j{
        {"benchmark", "train-dp"},
        {"dp", n},
        {"model", f.model},
        {"batch", f.batch},
        {"threads_per_replica", t},
        {"optimizer", f.optimizer},
        {"lr", f.lr},
        {"seed", f.seed},
        {"steps", f.steps},
        {"warmup", f.warmup},
        {"repeats", f.repeats},
        {"bucket_mb", f.bucket_mb},
        {"allreduce", f.allreduce},
        {"configs", rows},
        {"ratios", rj},
        {"ddp_peer", script ? nlohmann::json(script->string()) : nlohmann::json()},
        {"ddp_note", ddp_note},
        {"ddp_last_report", ddp_last},
        {"gemm_gflops", gflops},
        {"troupe_blas", our_blas},
        {"env",
         {{"OPENBLAS_CORETYPE", env_or_unset("OPENBLAS_CORETYPE")},
          {"OPENBLAS_L2_SIZE", env_or_unset("OPENBLAS_L2_SIZE")},
          {"OMP_NUM_THREADS", env_or_unset("OMP_NUM_THREADS")}}},
        {"load_average_before", load_before},
        {"load_average", load_average()},
    };
    write_json_file(f.json, j);
  }
  return exit_ok;
}

int bench_train(bench_flags f) {
  if (f.dp > 1)
    return bench_train_dp(std::move(f));
  if (f.batch == 0)
    f.batch = 64;
  if (f.lr <= 0.f)
    f.lr = f.optimizer == "sgd" ? 0.01f : 1e-3f;
  if (!fs::exists(f.data_dir))
    throw runtime::input_error("--data: no directory '" + f.data_dir + "'");

  // The peer: explicit --peer must exist; the default may be missing.
  std::optional<fs::path> peer;
  std::string peer_note;
  if (!f.peer.empty()) {
    if (!is_executable(f.peer))
      throw runtime::input_error("--peer: '" + f.peer + "' is not an executable file");
    peer = fs::path{f.peer};
  } else if (auto p = default_peer_path(); is_executable(p)) {
    peer = p;
  } else {
    peer_note = peer_missing;
  }
  if (peer && f.model != "mlp") {
    peer.reset();
    peer_note = "the libtorch peer implements only --model mlp";
  }

  runtime::temp_dir tmp{"troupe-bench-"};
  auto init = tmp.path() / "init.safetensors";
  write_initial_params(f.model, f.seed, init);

  runtime::system_config cfg;
  caf::actor_system sys{cfg};
  const double gflops = device_gemm_gflops(sys, f.threads);

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

  std::vector<troupe_run> ours;
  std::vector<double> ours_sps, theirs_sps, ratios;
  nlohmann::json peer_last;
  for (int r = 0; r < f.repeats; ++r) {
    // Alternate who goes first so that a drift in machine load hits both.
    std::optional<double> theirs;
    auto do_peer = [&] {
      peer_last = run_peer(*peer, f, init);
      theirs = peer_last.at("steps_per_second").get<double>();
    };
    if (peer && r % 2 == 1)
      do_peer();
    auto t = run_troupe(sys, f, 1, f.threads);
    if (peer && r % 2 == 0)
      do_peer();
    ours.push_back(t);
    ours_sps.push_back(t.steps_per_second);
    if (theirs) {
      theirs_sps.push_back(*theirs);
      ratios.push_back(t.steps_per_second / *theirs);
      std::printf("%-8d %16.1f %18.1f %8.3f %14.3f %14.3f\n", r + 1, t.steps_per_second, *theirs,
                  ratios.back(), t.step_ms, t.compute_ms);
    } else {
      std::printf("%-8d %16.1f %18s %8s %14.3f %14.3f\n", r + 1, t.steps_per_second, "-", "-",
                  t.step_ms, t.compute_ms);
    }
    std::fflush(stdout);
  }

  auto ts = summary::of(ours_sps);
  auto ls = summary::of(theirs_sps);
  auto rs = summary::of(ratios);
  std::vector<double> step_ms, compute_ms, overhead_ms;
  for (const auto& t : ours) {
    step_ms.push_back(t.step_ms);
    compute_ms.push_back(t.compute_ms);
    overhead_ms.push_back(t.step_ms - t.compute_ms);
  }
  auto os = summary::of(overhead_ms);
  auto cs = summary::of(compute_ms);
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
  std::printf("troupe step: %.3f ms median = device compute %.3f ms + runtime overhead %.3f ms "
              "(%.1f%%; messages, data loader, actor hops)\n",
              summary::of(step_ms).median, cs.median, os.median,
              100.0 * os.median / std::max(1e-12, summary::of(step_ms).median));
  std::printf("GEMM on a device actor (%d BLAS thread(s), 256x1024x1024): %.1f GFLOP/s\n",
              f.threads, gflops);
  // Described with this thread's BLAS thread count set as a device actor sets its own.
  kernels::cpu::set_blas_threads_for_this_thread(f.threads);
  auto our_blas = kernels::cpu::blas_description();
  std::string their_blas = peer_last.is_object() ? peer_last.value("blas", "?") : "-";
  std::printf("BLAS troupe:   %s\n", our_blas.c_str());
  std::printf("BLAS libtorch: %s", their_blas.c_str());
  if (peer_last.is_object() && peer_last.contains("openblas"))
    std::printf("  %s", peer_last.at("openblas").dump().c_str());
  std::printf("\nenv: OPENBLAS_CORETYPE=%s OPENBLAS_L2_SIZE=%s OMP_NUM_THREADS=%s; load average "
              "%s\n",
              env_or_unset("OPENBLAS_CORETYPE").c_str(), env_or_unset("OPENBLAS_L2_SIZE").c_str(),
              env_or_unset("OMP_NUM_THREADS").c_str(), load_average().c_str());
  std::printf("data: troupe reads MNIST through its data-loader actor; the peer trains on "
              "synthetic batches held in memory\n");

  if (!f.json.empty()) {
    nlohmann::json runs = nlohmann::json::array();
    for (std::size_t i = 0; i < ours.size(); ++i)
      runs.push_back({{"troupe_steps_per_second", ours[i].steps_per_second},
                      {"libtorch_steps_per_second",
                       i < theirs_sps.size() ? nlohmann::json(theirs_sps[i]) : nlohmann::json()},
                      {"troupe_step_ms", ours[i].step_ms},
                      {"troupe_device_compute_ms", ours[i].compute_ms}});
    nlohmann::json j{
      {"benchmark", "train"},
      {"model", f.model},
      {"batch", f.batch},
      {"threads", f.threads},
      {"optimizer", f.optimizer},
      {"lr", f.lr},
      {"seed", f.seed},
      {"steps", f.steps},
      {"warmup", f.warmup},
      {"repeats", f.repeats},
      {"troupe_steps_per_second", ts.median},
      {"libtorch_steps_per_second", peer ? nlohmann::json(ls.median) : nlohmann::json()},
      {"ratio", ratio ? nlohmann::json(*ratio) : nlohmann::json()},
      {"troupe", ts.to_json()},
      {"libtorch", peer ? ls.to_json() : nlohmann::json()},
      {"ratio_per_repeat", peer ? rs.to_json() : nlohmann::json()},
      {"troupe_step_ms", summary::of(step_ms).to_json()},
      {"troupe_device_compute_ms", cs.to_json()},
      {"troupe_overhead_ms", os.to_json()},
      {"runs", runs},
      {"gemm_gflops", gflops},
      {"gemm_shape", "256x1024x1024"},
      {"troupe_blas", our_blas},
      {"libtorch_blas", peer_last.is_object() ? nlohmann::json(their_blas) : nlohmann::json()},
      {"libtorch_openblas", peer_last.is_object() ? peer_last.value("openblas", nlohmann::json())
                                                  : nlohmann::json()},
      {"libtorch_version",
       peer_last.is_object() ? peer_last.value("torch_version", nlohmann::json()) : nlohmann::json()},
      {"peer", peer ? nlohmann::json(peer->string()) : nlohmann::json()},
      {"peer_note", peer_note},
      {"env",
       {{"OPENBLAS_CORETYPE", env_or_unset("OPENBLAS_CORETYPE")},
        {"OPENBLAS_L2_SIZE", env_or_unset("OPENBLAS_L2_SIZE")},
        {"OMP_NUM_THREADS", env_or_unset("OMP_NUM_THREADS")}}},
      {"load_average", load_average()},
    };
    write_json_file(f.json, j);
  }
  return exit_ok;
}

} // namespace

command_action add_bench_command(CLI::App& app) {
  auto* cmd =
      app.add_subcommand("bench", "benchmarks (train, transport, pipeline, allreduce, ps)");
  cmd->require_subcommand(1);
  auto* train = cmd->add_subcommand(
    "train", "training steps/s of troupe vs libtorch (same model, init, optimizer, batch, threads)");
  auto f = std::make_shared<bench_flags>();
  train->add_option("--model", f->model, "zoo model (the libtorch peer knows only mlp)")
    ->check(CLI::IsMember({"mlp", "cnn"}))
    ->capture_default_str();
  train->add_option("--batch", f->batch, "global batch size (default: 64; 256 with --dp)")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1} << 20));
  train
      ->add_option("--threads", f->threads,
                   "compute threads on each side (with --dp: per replica and per DDP process)")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  train->add_option("--optimizer", f->optimizer, "sgd | adam")
    ->check(CLI::IsMember({"sgd", "adam"}))
    ->capture_default_str();
  train->add_option("--lr", f->lr, "learning rate (default: sgd 0.01, adam 0.001)")
    ->check(CLI::Range(1e-12, 100.0));
  train->add_option("--steps", f->steps, "timed steps per repeat")
    ->check(CLI::Range(std::int64_t{1}, std::int64_t{10000000}))
    ->capture_default_str();
  train->add_option("--warmup", f->warmup, "untimed steps before them")
    ->check(CLI::Range(std::int64_t{0}, std::int64_t{10000000}))
    ->capture_default_str();
  train->add_option("--repeats", f->repeats, "repeats, troupe and libtorch interleaved")
    ->check(CLI::Range(1, 1000))
    ->capture_default_str();
  train->add_option("--seed", f->seed, "seed of the initial weights")->capture_default_str();
  train->add_option("--data", f->data_dir, "MNIST directory (troupe's data loader)")
    ->capture_default_str();
  train->add_option("--json", f->json, "also write the figures as JSON to FILE");
  train->add_option("--peer", f->peer,
                    std::string{"the libtorch peer (default: "} + peer_name +
                      " next to this executable)");
  train
      ->add_option("--dp", f->dp,
                   "data parallelism: compare troupe --dp N (N replicas) with 1 replica on 1x "
                   "and Nx the threads and with PyTorch DDP (gloo), N processes")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  train
      ->add_option("--bucket-mb", f->bucket_mb,
                   "with --dp: gradient all-reduce bucket size in MiB (troupe and DDP; 0: troupe "
                   "all-reduces once after backward, DDP gets 1024)")
      ->check(CLI::Range(0.0, 1e6))
      ->capture_default_str();
  train
      ->add_option("--allreduce", f->allreduce,
                   "with --dp: troupe's all-reduce (auto | ring | tree)")
      ->check(CLI::IsMember({"auto", "ring", "tree"}))
      ->capture_default_str();
  train->add_option("--ddp-peer", f->ddp_peer,
                    std::string{"with --dp: the DDP peer script (default: "} + ddp_peer_name +
                        " next to this executable, else ./" + ddp_peer_source + ")");
  train->add_option("--python", f->python, "with --dp: the interpreter with python3-torch")
      ->capture_default_str();
  train
      ->add_option("--peer-timeout", f->peer_timeout,
                   "with --dp: seconds one DDP run may take before it is killed")
      ->check(CLI::Range(1.0, 86400.0))
      ->capture_default_str();
  auto transport = add_bench_transport_command(*cmd);
  auto pipeline = add_bench_pipeline_command(*cmd);
  auto allreduce = add_bench_allreduce_command(*cmd);
  auto ps = add_bench_ps_command(*cmd);
  return [cmd, train, f, transport, pipeline, allreduce, ps] {
    if (train->parsed())
      return bench_train(*f);
    if (cmd->got_subcommand("pipeline"))
      return pipeline();
    if (cmd->got_subcommand("allreduce") || cmd->got_subcommand("allreduce-rank"))
      return allreduce();
    if (cmd->got_subcommand("ps") || cmd->got_subcommand("ps-rank"))
      return ps();
    return transport(); // bench transport (or its receiver), else exit_bad_input
  };
}

} // namespace troupe::apps
