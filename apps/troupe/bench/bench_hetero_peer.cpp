// `troupe bench hetero`'s same-run peer: PyTorch DDP over gloo
// (bench/peers/ddp_mlp.py), rank 0 pinned to core 0 and rank 1 to core 1
// like the nodes, rank 1 throttled by the same scripts/throttle. DDP can only
// split the batch evenly, so this is its best at each speed ratio.

#include <chrono>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "apps/troupe/bench/bench_hetero_runs.hpp"
#include "apps/troupe/bench/bench_train_job.hpp"
#include "apps/troupe/bench/bench_util.hpp"
#include "apps/troupe/child_process.hpp"
#include "runtime/error.hpp"

namespace troupe::apps::hetero_bench {

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

/// Warm-up steps DDP runs untimed (the throttle is in place long before).
constexpr int ddp_warmup = 20;

/// --ddp-peer, else the copy next to this executable, else the source
/// tree's; nullopt with `why` set when there is none.
std::optional<fs::path> find_script(const flags& f, std::string& why) {
  std::error_code ec;
  if (!f.ddp_peer.empty()) {
    if (!fs::is_regular_file(f.ddp_peer, ec))
      throw runtime::input_error("--ddp-peer: no file '" + f.ddp_peer + "'");
    return fs::path{f.ddp_peer};
  }
  if (auto p = next_to_self(train_bench::ddp_peer_name); fs::is_regular_file(p, ec))
    return p;
  for (auto dir = self_exe().parent_path(); !dir.empty() && dir != dir.root_path();
       dir = dir.parent_path())
    if (auto p = dir / train_bench::ddp_peer_source; fs::is_regular_file(p, ec))
      return p;
  if (fs::is_regular_file(train_bench::ddp_peer_source, ec))
    return fs::path{train_bench::ddp_peer_source};
  why = std::string{"DDP peer script not found ("} + train_bench::ddp_peer_name +
        " next to this executable, or " + train_bench::ddp_peer_source + "; --ddp-peer FILE)";
  return std::nullopt;
}

std::string file_text(const fs::path& p) {
  std::ifstream in(p);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// Why DDP cannot run here (no interpreter, no torch), or nullopt; sets the
/// torch version when it can.
std::optional<std::string> unavailable(const context& x, const fs::path& script,
                                       std::string& version) {
  if (!is_executable(x.f.python))
    return "no Python interpreter at " + x.f.python + " (--python)";
  const auto log = x.dir / "ddp-check.log";
  child_process p{{x.f.python, script.string(), "--check"}, log};
  auto st = p.wait_for(120s);
  if (st != 0) {
    if (!st)
      p.stop();
    return "torch is not usable (" + x.f.python + " " + script.string() +
           " --check: " + last_line(file_text(log)) + ")";
  }
  const auto j = nlohmann::json::parse(last_line(file_text(log)), nullptr, false);
  version = j.is_object() ? j.value("torch_version", std::string{"?"}) : std::string{"?"};
  return std::nullopt;
}

/// Rank 1's pid from the launcher's --pids-file, once it is written.
pid_t rank1_pid(child_process& launcher, const fs::path& pids) {
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (!fs::exists(pids)) {
    if (launcher.wait_for(10ms))
      throw std::runtime_error("the DDP launcher exited before starting its ranks: " +
                               launcher.log_tail(400));
    if (std::chrono::steady_clock::now() > deadline)
      throw std::runtime_error("the DDP launcher wrote no " + pids.string() + " within 60 s");
  }
  std::istringstream in(file_text(pids));
  for (long rank = 0, pid = 0; in >> rank >> pid;)
    if (rank == 1)
      return static_cast<pid_t>(pid);
  throw std::runtime_error(pids.string() + " names no rank 1");
}

/// One DDP run with rank 1 at 1/`ratio` of its core; its samples/s.
double run_ddp(const context& x, const fs::path& script, double ratio) {
  const auto tag = "ddp-" + number(ratio);
  const auto out = x.dir / (tag + ".json"), pids = x.dir / (tag + ".pids");
  const double timeout = 600;
  throttle_group group{x.thr, x.group_prefix + "-" + tag};
  child_process launcher{{x.f.python,      script.string(),
                          "--world",       "2",
                          "--threads",     "1",
                          "--batch",       std::to_string(x.f.batch),
                          "--optimizer",   "adam",
                          "--lr",          "0.001",
                          "--warmup",      std::to_string(ddp_warmup),
                          "--steps",       std::to_string(x.f.steps),
                          "--local-steps", "0",
                          "--data",        fs::absolute(x.f.data_dir).string(),
                          "--cpus",        "0,1",
                          "--pids-file",   pids.string(),
                          "--timeout",     number(timeout),
                          "--out",         out.string()},
                         x.dir / (tag + ".log")};
  x.thr.set(group.name(), rank1_pid(launcher, pids), 1 / ratio);
  const auto st = launcher.wait_for(std::chrono::seconds(static_cast<int>(timeout) + 30));
  if (st != 0)
    throw std::runtime_error("DDP at ratio " + number(ratio) + " failed (" +
                             (st ? "exit " + std::to_string(*st) : std::string{"timed out"}) +
                             "): " + last_line(launcher.log_tail()));
  const double sps = nlohmann::json::parse(file_text(out)).at("samples_per_second").get<double>();
  std::printf("  %-28s %9.0f samples/s\n", ("DDP equal, ratio " + number(ratio)).c_str(), sps);
  std::fflush(stdout);
  return sps;
}

} // namespace

nlohmann::json peer_result::to_json() const {
  nlohmann::json runs = nlohmann::json::array();
  for (const auto& [ratio, sps] : samples_per_second)
    runs.push_back({{"ratio", ratio}, {"samples_per_second", sps}});
  return {{"framework", "pytorch-ddp"},
          {"skipped", skipped.empty() ? nlohmann::json() : nlohmann::json(skipped)},
          {"torch_version", torch_version},
          {"runs", runs}};
}

peer_result run_peer(const context& x) {
  peer_result out;
  if (x.f.no_peer) {
    out.skipped = "--no-peer";
    return out;
  }
  std::string why;
  const auto script = find_script(x.f, why);
  if (!script) {
    out.skipped = why;
    return out;
  }
  if (auto no = unavailable(x, *script, out.torch_version)) {
    out.skipped = *no;
    return out;
  }
  for (double r : x.f.ratios)
    out.samples_per_second.emplace_back(r, run_ddp(x, *script, r));
  return out;
}

} // namespace troupe::apps::hetero_bench
