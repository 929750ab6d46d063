// `troupe bench recovery`, peer (b): PyTorch's torchrun elastic launcher
// (python3 -m torch.distributed.run --max_restarts 3, one agent, 3 workers on
// 127.0.0.1) running bench/peers/ddp_elastic.py, a DDP job of the zoo mlp
// that checkpoints every 10 steps. The same kill -9 of one worker at the same
// step as troupe's dp scenario; torchrun stops every worker and restarts them
// all from the last checkpoint. Time lost = its wall time - the same run's
// without the kill, in this invocation.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "apps/troupe/bench/bench_recovery_runs.hpp"
#include "apps/troupe/bench/bench_util.hpp"
#include "apps/troupe/child_process.hpp"

namespace troupe::apps::recovery_bench {

namespace {

namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr const char* script_name = "troupe_peer_ddp_elastic.py";
constexpr const char* script_source = "bench/peers/ddp_elastic.py";
constexpr int world = 3;
constexpr std::int64_t steps = 45, kill_step = 15, victim_rank = 1;

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// The script: --torch-peer, else next to this executable, else the source
/// tree's (relative to the working directory); empty when there is none.
fs::path find_script(const flags& f) {
  std::error_code ec;
  if (!f.torch_peer.empty())
    return fs::is_regular_file(f.torch_peer, ec) ? fs::path{f.torch_peer} : fs::path{};
  if (auto p = next_to_self(script_name); fs::is_regular_file(p, ec))
    return p;
  return fs::is_regular_file(script_source, ec) ? fs::path{script_source} : fs::path{};
}

/// A TCP port free on 127.0.0.1 now (torchrun's rendezvous store), not
/// torchrun's fixed 29400, so runs beside others do not collide.
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  int port = 0;
  if (fd >= 0 && ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
    port = ntohs(a.sin_port);
  if (fd >= 0)
    ::close(fd);
  if (port == 0)
    throw std::runtime_error("no free port for torchrun's rendezvous");
  return port;
}

/// "<pid> <steps done>" of a worker's progress file; {-1, -1} while absent.
std::pair<pid_t, std::int64_t> progress_of(const fs::path& file) {
  std::istringstream in(read_text(file));
  long pid = -1;
  std::int64_t step = -1;
  if (!(in >> pid >> step))
    return {-1, -1};
  return {static_cast<pid_t>(pid), step};
}

/// Kills worker processes of the script still alive (torchrun stops them
/// itself, and they die with it; this is for a torchrun that was killed).
void kill_leftover_workers(const fs::path& progress) {
  for (int r = 0; r < world; ++r) {
    const auto [pid, step] = progress_of(progress / ("rank" + std::to_string(r)));
    if (pid > 0 && read_text("/proc/" + std::to_string(pid) + "/cmdline").find("ddp_elastic") !=
                       std::string::npos)
      ::kill(pid, SIGKILL);
  }
}

/// What one torchrun run measured.
struct torch_run {
  double wall_s = 0;
  double back_s = -1; ///< the kill .. rank 1 (restarted) has done the steps done at the kill
};

/// One torchrun run in `dir`; with `kill` rank 1 is killed (-9) once it has
/// done kill_step steps.
torch_run run_once(const flags& f, const fs::path& script, const fs::path& dir, bool kill) {
  const auto progress = dir / "progress";
  fs::create_directories(progress);
  const std::vector<std::string> argv{
      f.python, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node",
      std::to_string(world), "--max_restarts", "3", "--monitor_interval",
      number(f.monitor_interval), "--rdzv_backend", "c10d", "--rdzv_endpoint",
      "127.0.0.1:" + std::to_string(free_port()), "--rdzv_id", "troupe-bench",
      // Debian's torch 1.13 under Python 3.11 cannot parse the default
      // --redirects 0 / --tee 0 (IntFlag iteration skips 0): stderr then.
      "--redirects", "2", "--tee", "2", "--log_dir", (dir / "logs").string(), script.string(),
      "--data", fs::absolute(f.data_dir).string(), "--batch", "768", "--steps",
      std::to_string(steps), "--checkpoint", (dir / "ck").string(), "--checkpoint-every", "10",
      "--progress", progress.string()};
  const auto victim = progress / ("rank" + std::to_string(victim_rank));
  const auto t0 = clock_type::now();
  auto run = std::make_unique<child_process>(argv, dir / "torchrun.log");
  torch_run r;
  std::optional<std::pair<pid_t, std::int64_t>> killed; // the victim and its steps then
  clock_type::time_point killed_at;
  std::optional<int> st;
  while (!(st = run->wait_for(5ms))) {
    const auto [pid, step] = progress_of(victim);
    if (kill && !killed && step >= kill_step) {
      ::kill(pid, SIGKILL);
      killed_at = clock_type::now();
      killed = std::make_pair(pid, step);
    } else if (killed && r.back_s < 0 && pid > 0 && pid != killed->first &&
               step >= killed->second) {
      r.back_s = std::chrono::duration<double>(clock_type::now() - killed_at).count();
    }
    if (clock_type::now() - t0 > 300s) {
      run.reset();
      kill_leftover_workers(progress);
      throw std::runtime_error("torchrun did not end within 300 s");
    }
  }
  r.wall_s = std::chrono::duration<double>(clock_type::now() - t0).count();
  kill_leftover_workers(progress);
  if (*st != 0)
    throw std::runtime_error("torchrun failed (exit " + std::to_string(*st) + "):\n" +
                             run->log_tail());
  return r;
}

} // namespace

torch_result run_torchrun(const flags& f, const fs::path& dir) {
  torch_result r;
  r.kill_step = kill_step;
  r.monitor_interval = f.monitor_interval;
  const auto script = find_script(f);
  if (script.empty()) {
    r.skipped = std::string{"script not found ("} + script_name + " next to this executable, " +
                script_source + " or --torch-peer)";
    return r;
  }
  fs::create_directories(dir);
  {
    child_process check{{f.python, script.string(), "--check"}, dir / "check.log"};
    const auto st = check.wait_for(120s);
    if (st != 0) {
      r.skipped = st == 3 ? "python3-torch not installed"
                          : "torch check failed: " + last_line(check.log_tail());
      return r;
    }
    try {
      r.version = "torch " + nlohmann::json::parse(last_line(check.log_tail()))
                                 .value("torch_version", std::string{"?"});
    } catch (const nlohmann::json::exception&) {
      r.version = last_line(check.log_tail());
    }
  }
  r.baseline_s = run_once(f, script, dir / "base", false).wall_s;
  const auto failed = run_once(f, script, dir / "kill", true);
  r.failed_s = failed.wall_s;
  r.back_s = failed.back_s;
  const auto restored = read_text(dir / "kill" / "progress" / "restored-1");
  r.restored_step = restored.empty() ? -1 : std::stoll(restored);
  return r;
}

nlohmann::json torch_result::to_json() const {
  if (!skipped.empty())
    return {{"skipped", skipped}};
  return {{"version", version},
          {"baseline_wall_seconds", baseline_s},
          {"failed_wall_seconds", failed_s},
          {"kill_step", kill_step},
          {"restored_step", restored_step},
          {"wall_seconds_lost", lost_s()},
          {"back_at_step_seconds", back_s},
          {"monitor_interval", monitor_interval},
          {"world", world},
          {"steps", steps}};
}

} // namespace troupe::apps::recovery_bench
