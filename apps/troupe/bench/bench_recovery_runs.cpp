// `troupe bench recovery`: one failure scenario on a local cluster (its
// failure-free run, the run with kill -9, the SIGSTOP run, the operator's
// full restart with --resume) and the snapshot and checkpoint overhead.

#include "apps/troupe/bench/bench_recovery_runs.hpp"

#include <signal.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <functional>
#include <memory>
#include <stdexcept>
#include <thread>

#include "apps/troupe/bench/bench_local_cluster.hpp"
#include "apps/troupe/bench/bench_util.hpp"

namespace troupe::apps::recovery_bench {

namespace {

namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;
using namespace std::chrono_literals;

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

nlohmann::json read_json(const fs::path& file) {
  std::ifstream in(file);
  if (!in)
    throw std::runtime_error("no report " + file.string());
  return nlohmann::json::parse(in);
}

/// The client's exit status; throws when it runs past `timeout`.
int wait_client(child_process& client, const local_cluster& c,
                std::chrono::seconds timeout = 300s) {
  if (auto st = client.wait_for(timeout))
    return *st;
  throw std::runtime_error("a job did not end within " + std::to_string(timeout.count()) + " s:\n" +
                           client.log_tail() + "\nsupervisor log:\n" + c.supervisor_log_tail());
}

/// Runs a job that must succeed; its wall seconds (submit .. exit).
double run_clean(const local_cluster& c, const std::vector<std::string>& args,
                 const std::string& name) {
  const auto t0 = clock_type::now();
  auto client = c.submit(args, name);
  const int st = wait_client(*client, c);
  const double wall = seconds_since(t0);
  if (st != 0)
    throw std::runtime_error("the job '" + name + "' failed (exit " + std::to_string(st) + "):\n" +
                             client->log_tail() + "\nsupervisor log:\n" + c.supervisor_log_tail());
  return wall;
}

/// The job as /status shows it.
struct job_view {
  nlohmann::json job;
  std::int64_t id = 0, generation = 0, step = -1;
  bool running = false;
};

job_view view(const local_cluster& c) {
  job_view v;
  v.job = c.status().at("job");
  v.id = v.job.value("id", std::int64_t{0});
  v.generation = v.job.value("generation", std::int64_t{0});
  v.running = v.job.value("phase", "") == "running";
  const auto p = v.job.find("progress");
  if (p != v.job.end() && p->is_object())
    v.step = p->value("step", std::int64_t{-1});
  return v;
}

/// The node of the job actor whose label contains `victim`.
std::string victim_node(const job_view& v, const std::string& victim) {
  for (const auto& a : v.job.at("actors"))
    if (a.value("label", "").find(victim) != std::string::npos)
      return a.at("node").get<std::string>();
  throw std::runtime_error("no job actor '" + victim + "' in /status");
}

/// Where the job was when the bench signalled its victim's node.
struct signalled {
  std::string node;
  pid_t pid = -1;
  double at_unix = 0;
  clock_type::time_point at;
  std::int64_t step = 0, job_id = 0, generation = 0;
};

/// Waits until the job has done the scenario's kill step, then sends `sig`
/// to the node of its victim.
signalled signal_at_step(local_cluster& c, child_process& client, const scenario& s, int sig) {
  const auto deadline = clock_type::now() + 120s;
  for (;;) {
    const auto v = view(c);
    if (v.running && v.step >= s.kill_step) {
      signalled k;
      k.node = victim_node(v, s.victim);
      k.pid = c.node_pid(k.node);
      k.step = v.step;
      k.job_id = v.id;
      k.generation = v.generation;
      k.at_unix = unix_now();
      k.at = clock_type::now();
      ::kill(k.pid, sig);
      return k;
    }
    if (client.wait_for(0ms))
      throw std::runtime_error("the job ended before step " + std::to_string(s.kill_step) + ":\n" +
                               client.log_tail());
    if (clock_type::now() > deadline)
      throw std::runtime_error("the job did not reach step " + std::to_string(s.kill_step));
    std::this_thread::sleep_for(5ms);
  }
}

/// Seconds from the signal until the resubmitted job (another job id) runs
/// and has done `step` steps.
double wait_back(const local_cluster& c, child_process& client, const signalled& k,
                 std::int64_t step) {
  const auto deadline = clock_type::now() + 120s;
  for (;;) {
    const auto v = view(c);
    if (v.id != k.job_id && v.running && v.step >= step)
      return seconds_since(k.at);
    if (client.wait_for(0ms))
      throw std::runtime_error("the job ended before it was back at step " + std::to_string(step) +
                               ":\n" + client.log_tail());
    if (clock_type::now() > deadline)
      throw std::runtime_error("the job was not back at step " + std::to_string(step) +
                               " within 120 s:\n" + c.supervisor_log_tail());
    std::this_thread::sleep_for(10ms);
  }
}

/// A stopped node is continued once the supervisor has detected it (a
/// restart shows in /status), so that it rejoins as a fresh node.
void continue_when_detected(const local_cluster& c, child_process& client, const signalled& k) {
  const auto deadline = clock_type::now() + 60s;
  while (view(c).job.at("recovery").at("restarts").empty()) {
    if (client.wait_for(0ms) || clock_type::now() > deadline)
      break; // the job's end or the bench's check of its report says what went wrong
    std::this_thread::sleep_for(10ms);
  }
  ::kill(k.pid, SIGCONT);
}

/// The job's flags, its report and (when `ckpt_every` > 0) its periodic
/// checkpoints.
std::vector<std::string> job_args(const scenario& s, const fs::path& dir, const std::string& name,
                                  std::int64_t ckpt_every) {
  auto a = s.job;
  a.insert(a.end(), {"--report", (dir / (name + ".json")).string()});
  if (ckpt_every > 0)
    a.insert(a.end(), {"--checkpoint", (dir / (name + "-ck")).string(), "--checkpoint-every",
                       std::to_string(ckpt_every)});
  return a;
}

/// The first restart of a job's report, against the signal.
fault_run read_fault(const fs::path& report, const signalled& k) {
  const auto r = read_json(report);
  const auto& rs = r.at("recovery").at("restarts");
  if (rs.empty())
    throw std::runtime_error(report.string() + ": the job finished without a restart");
  const auto& x = rs[0];
  fault_run f;
  f.restarts = static_cast<int>(rs.size());
  f.at_step = x.value("failed_at_step", std::int64_t{-1});
  f.detection_s = x.at("detected_at").get<double>() - k.at_unix;
  f.replan_s = x.value("replan_seconds", -1.0);
  f.steps_redone = x.value("steps_redone", std::int64_t{-1});
  if (x.contains("seconds_lost") && x["seconds_lost"].is_number())
    f.report_lost_s = x["seconds_lost"].get<double>();
  f.source = x.value("restore_source", "");
  // Back at the failed step: the last restart that saw it done again (a
  // planned one, growing the job back, may follow at once).
  for (auto it = rs.rbegin(); it != rs.rend(); ++it)
    if (it->contains("seconds_lost") && (*it)["seconds_lost"].is_number()) {
      f.back_s =
          it->at("detected_at").get<double>() + (*it)["seconds_lost"].get<double>() - k.at_unix;
      break;
    }
  return f;
}

/// The job with `sig` sent to its victim's node at the kill step; it must
/// recover by itself. A stopped node is continued once the supervisor has
/// detected it (a restart shows in /status). Returns the run and the node.
std::pair<fault_run, std::string> run_with_signal(local_cluster& c, const scenario& s,
                                                  const fs::path& dir, const std::string& name,
                                                  int sig) {
  const auto t0 = clock_type::now();
  auto client = c.submit(job_args(s, dir, name, s.checkpoint_every), name);
  const auto k = signal_at_step(c, *client, s, sig);
  if (sig == SIGSTOP)
    continue_when_detected(c, *client, k);
  const int st = wait_client(*client, c);
  const double wall = seconds_since(t0);
  if (st != 0)
    throw std::runtime_error("the job '" + name + "' did not recover (exit " + std::to_string(st) +
                             "):\n" + client->log_tail() + "\nsupervisor log:\n" +
                             c.supervisor_log_tail());
  auto f = read_fault(dir / (name + ".json"), k);
  f.wall_s = wall;
  return {f, k.node};
}

/// Peer (a): the job with --max-restarts 0 and checkpoints every 10 steps,
/// killed at the same step, fails; the operator restarts the lost node and
/// resubmits with --resume at once (`replace` starts the node). Without
/// restarts a job takes no snapshots; --snapshot-every 0 says so (with the
/// automatic interval and --max-restarts 0 the first periodic checkpoint
/// hangs the trainer: reported to the lead).
full_restart run_full_restart(local_cluster& c, const scenario& s, const fs::path& dir,
                              const std::function<void(const std::string&, bool)>& replace) {
  auto args = [&](const std::string& name) {
    std::vector<std::string> a;
    for (std::size_t i = 0; i < s.job.size(); ++i)
      if (s.job[i] == "--snapshot-every")
        ++i;
      else
        a.push_back(s.job[i]);
    a.insert(a.end(), {"--report", (dir / (name + ".json")).string(), "--checkpoint",
                       (dir / (name + "-ck")).string(), "--checkpoint-every", "10",
                       "--max-restarts", "0", "--snapshot-every", "0"});
    return a;
  };
  full_restart r;
  r.baseline_s = run_clean(c, args("restart-base"), "restart-base");
  const auto t0 = clock_type::now();
  auto client = c.submit(args("restart-failed"), "restart-failed");
  const auto k = signal_at_step(c, *client, s, SIGKILL);
  // The steps the job had done when it failed, as the supervisor saw them.
  std::int64_t failed_at = k.step;
  while (!client->wait_for(0ms)) {
    if (const auto v = view(c); v.id == k.job_id)
      failed_at = std::max(failed_at, v.step);
    std::this_thread::sleep_for(5ms);
  }
  const int st = wait_client(*client, c);
  r.failed_s = seconds_since(t0);
  if (st == 0)
    throw std::runtime_error("the job with --max-restarts 0 survived the kill");
  const auto t1 = clock_type::now();
  replace(k.node, false);
  auto resumed = args("restart-resumed");
  resumed.insert(resumed.end(), {"--resume", (dir / "restart-failed-ck").string()});
  auto client2 = c.submit(resumed, "restart-resumed");
  r.back_s = wait_back(c, *client2, k, failed_at);
  const int st2 = wait_client(*client2, c);
  r.resumed_s = seconds_since(t1);
  if (st2 != 0)
    throw std::runtime_error("the resumed job failed (exit " + std::to_string(st2) + "):\n" +
                             client2->log_tail());
  const auto rep = read_json(dir / "restart-resumed.json");
  r.resumed_from =
      rep.value("steps", std::int64_t{0}) - rep.value("steps_this_run", std::int64_t{0});
  return r;
}

std::vector<std::string> names(const std::string& prefix, int n) {
  std::vector<std::string> v;
  for (int i = 0; i < n; ++i)
    v.push_back(prefix + std::to_string(i));
  return v;
}

} // namespace

std::vector<scenario> default_scenarios(const std::string& data_dir) {
  const std::vector<std::string> common{
      "--model", "mlp", "--data", fs::absolute(data_dir).string(), "--no-eval", "--no-progress"};
  auto job = [&](std::vector<std::string> extra) {
    auto a = common;
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  };
  // Kill steps lie mid-interval (x5 with snapshots or checkpoints every 10).
  std::vector<scenario> v;
  v.push_back({"dp", names("n", 3), job({"--dp", "3", "--batch", "768", "--steps", "45"}),
               "replica 2", 15, 0, true});
  v.push_back({"pp-snapshot", names("n", 4),
               job({"--pp", "3", "--steps", "200", "--snapshot-every", "10"}), "stage 1", 105, 0,
               false});
  v.push_back({"pp-checkpoint", names("n", 3),
               job({"--pp", "3", "--steps", "200", "--snapshot-every", "0"}), "stage 1", 105, 10,
               false});
  v.push_back({"ppxdp", names("n", 5),
               job({"--pp", "2", "--dp", "2", "--batch", "128", "--steps", "150",
                    "--snapshot-every", "10"}),
               "stage 1", 75, 0, false});
  v.push_back({"ps-sync", std::vector<std::string>{"ps-0", "worker-0", "worker-1"},
               job({"--ps", "1", "--workers", "2", "--steps", "150", "--snapshot-every", "10"}),
               "ps_shard 0", 75, 0, false});
  return v;
}

scenario_result run_scenario(const scenario& s, bool with_peer, const fs::path& dir) {
  fs::create_directories(dir);
  local_cluster c{dir, s.nodes, 1};
  int replaced = 0;
  // A lost node's replacement: "n2" -> "n2r1", "ps-0" -> "ps-0r2" (still a
  // ps node for the planner).
  auto replace = [&](const std::string& node, bool wait) {
    c.add_node(node + "r" + std::to_string(++replaced));
    if (wait)
      c.wait_ready(s.nodes.size(), 30s);
  };
  scenario_result r;
  r.name = s.name;
  r.baseline_s = run_clean(c, job_args(s, dir, "base", s.checkpoint_every), "base");
  auto [kill, node] = run_with_signal(c, s, dir, "kill", SIGKILL);
  r.kill = kill;
  replace(node, true);
  if (s.sigstop) {
    r.stop = run_with_signal(c, s, dir, "stop", SIGSTOP).first;
    c.wait_ready(s.nodes.size(), 30s); // the stopped node rejoins as a fresh one
  }
  if (with_peer)
    r.peer = run_full_restart(c, s, dir, replace);
  return r;
}

overhead_result run_overhead(const flags& f, const fs::path& dir) {
  fs::create_directories(dir);
  local_cluster c{dir, names("n", 3), 1};
  overhead_result r;
  r.intervals = f.quick ? std::vector<std::int64_t>{50} : std::vector<std::int64_t>{10, 50, 200};
  for (auto* fig : {&r.step, &r.cpu}) {
    fig->snap.resize(r.intervals.size());
    fig->ckpt.resize(r.intervals.size());
  }
  const std::vector<std::string> job{
      "--model", "mlp", "--data",  fs::absolute(f.data_dir).string(), "--no-eval", "--no-progress",
      "--pp",    "3",   "--steps", std::to_string(f.overhead_steps)};
  // Config 0: neither; 1..k: snapshots; k+1..2k: checkpoints.
  const std::size_t k = r.intervals.size(), n = 1 + 2 * k;
  auto slot = [&](overhead_result::figures& fig, std::size_t cfg) -> std::vector<double>& {
    return cfg == 0 ? fig.base : cfg <= k ? fig.snap[cfg - 1] : fig.ckpt[cfg - 1 - k];
  };
  for (int rep = 0; rep < f.repeats; ++rep)
    for (std::size_t j = 0; j < n; ++j) {
      const std::size_t cfg = (j + static_cast<std::size_t>(rep)) % n; // rotated per repeat
      const auto name = "overhead-" + std::to_string(rep) + "-" + std::to_string(cfg);
      auto a = job;
      a.insert(a.end(), {"--report", (dir / (name + ".json")).string()});
      const auto interval = cfg == 0 ? 0 : r.intervals[(cfg - 1) % k];
      a.insert(a.end(), {"--snapshot-every", std::to_string(cfg >= 1 && cfg <= k ? interval : 0)});
      if (cfg > k)
        a.insert(a.end(), {"--checkpoint", (dir / (name + "-ck")).string(), "--checkpoint-every",
                           std::to_string(interval)});
      const double cpu0 = c.cpu_seconds();
      run_clean(c, a, name);
      const double cpu = c.cpu_seconds() - cpu0;
      const auto rep_json = read_json(dir / (name + ".json"));
      const double steps = std::max<double>(1, rep_json.at("timed_steps").get<double>());
      slot(r.step, cfg).push_back(rep_json.at("timed_seconds").get<double>() / steps);
      slot(r.cpu, cfg).push_back(cpu / steps);
      std::error_code ec;
      fs::remove_all(dir / (name + "-ck"), ec);
    }
  return r;
}

nlohmann::json fault_run::to_json() const {
  return {{"wall_seconds", wall_s},
          {"back_at_step_seconds", back_s},
          {"at_step", at_step},
          {"detection_seconds", detection_s},
          {"replan_seconds", replan_s},
          {"steps_redone", steps_redone},
          {"report_seconds_lost", report_lost_s},
          {"restore_source", source},
          {"restarts", restarts}};
}

nlohmann::json scenario_result::to_json() const {
  nlohmann::json j{{"scenario", name},
                   {"baseline_wall_seconds", baseline_s},
                   {"kill9", kill.to_json()},
                   {"wall_seconds_lost", lost_s()}};
  if (stop) {
    j["sigstop"] = stop->to_json();
    j["sigstop"]["wall_seconds_lost"] = stop->wall_s - baseline_s;
  }
  if (peer)
    j["full_restart"] = {
        {"baseline_wall_seconds", peer->baseline_s}, {"failed_wall_seconds", peer->failed_s},
        {"resumed_wall_seconds", peer->resumed_s},   {"back_at_step_seconds", peer->back_s},
        {"resumed_from_step", peer->resumed_from},   {"wall_seconds_lost", peer->lost_s()}};
  return j;
}

nlohmann::json overhead_result::to_json() const {
  nlohmann::json rows = nlohmann::json::array();
  for (std::size_t i = 0; i < intervals.size(); ++i)
    rows.push_back({{"interval", intervals[i]},
                    {"snapshot_step_seconds", step.snap[i]},
                    {"checkpoint_step_seconds", step.ckpt[i]},
                    {"snapshot_cpu_seconds_per_step", cpu.snap[i]},
                    {"checkpoint_cpu_seconds_per_step", cpu.ckpt[i]}});
  return {{"base_step_seconds", step.base},
          {"base_cpu_seconds_per_step", cpu.base},
          {"intervals", rows}};
}

} // namespace troupe::apps::recovery_bench
