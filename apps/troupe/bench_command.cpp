// `troupe bench train`: training-step throughput of troupe (the same
// supervisor, trainer, layer shards and device actors as `troupe train`)
// against the same model, initial weights, optimizer, batch and thread count
// in libtorch (the optional troupe_peer_libtorch executable), in one run with
// the repeats interleaved so that both sides see the same machine load.

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/scoped_actor.hpp>
#include <nlohmann/json.hpp>

#include "actors/device_actor.hpp"
#include "actors/job.hpp"
#include "apps/troupe/bench_pipeline.hpp"
#include "apps/troupe/bench_transport.hpp"
#include "apps/troupe/bench_util.hpp"
#include "apps/troupe/commands.hpp"
#include "kernels/cpu/gemm.hpp"
#include "models/sequential.hpp"
#include "models/zoo.hpp"
#include "runtime/error.hpp"
#include "runtime/messages.hpp"
#include "runtime/safetensors.hpp"
#include "runtime/system_config.hpp"
#include "runtime/temp_dir.hpp"

namespace troupe::apps {

namespace {

namespace fs = std::filesystem;

constexpr const char* peer_name = "troupe_peer_libtorch";
constexpr const char* peer_missing = "libtorch peer not built: scripts/bootstrap --peers";

struct bench_flags {
  std::string model = "mlp";
  std::int64_t batch = 64;
  int threads = 1;
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

/// Median, min and max of a sample (empty: all zero).
struct summary {
  double median = 0, min = 0, max = 0;
  static summary of(std::vector<double> v) {
    summary s;
    if (v.empty())
      return s;
    std::sort(v.begin(), v.end());
    auto n = v.size();
    s.median = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
    s.min = v.front();
    s.max = v.back();
    return s;
  }
  /// (max - min) / median, in percent.
  double spread_percent() const { return median > 0 ? 100.0 * (max - min) / median : 0.0; }
  nlohmann::json to_json() const {
    return {{"median", median}, {"min", min}, {"max", max}, {"spread_percent", spread_percent()}};
  }
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

troupe_run run_troupe(caf::actor_system& sys, const bench_flags& f) {
  actors::train_options o;
  o.model = f.model;
  o.data_dir = f.data_dir;
  o.batch = f.batch;
  o.optimizer = f.optimizer;
  o.lr = f.lr;
  o.seed = f.seed;
  o.threads = f.threads;
  o.stages = 1;
  o.max_steps = f.warmup + f.steps;
  o.timing_warmup = f.warmup;
  o.evaluate = false;
  o.progress = false;
  auto r = actors::run_training(sys, o).report;
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

int bench_train(bench_flags f) {
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
    auto t = run_troupe(sys, f);
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
  auto* cmd = app.add_subcommand("bench", "benchmarks (train, transport, pipeline)");
  cmd->require_subcommand(1);
  auto* train = cmd->add_subcommand(
    "train", "training steps/s of troupe vs libtorch (same model, init, optimizer, batch, threads)");
  auto f = std::make_shared<bench_flags>();
  train->add_option("--model", f->model, "zoo model (the libtorch peer knows only mlp)")
    ->check(CLI::IsMember({"mlp", "cnn"}))
    ->capture_default_str();
  train->add_option("--batch", f->batch, "batch size")
    ->check(CLI::Range(std::int64_t{1}, std::int64_t{1} << 20))
    ->capture_default_str();
  train->add_option("--threads", f->threads, "compute threads on each side")
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
  auto transport = add_bench_transport_command(*cmd);
  auto pipeline = add_bench_pipeline_command(*cmd);
  return [cmd, train, f, transport, pipeline] {
    if (train->parsed())
      return bench_train(*f);
    if (cmd->got_subcommand("pipeline"))
      return pipeline();
    return transport(); // bench transport (or its receiver), else exit_bad_input
  };
}

} // namespace troupe::apps
