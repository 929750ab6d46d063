// `troupe bench recovery` (issue 14): on a local cluster of node processes
// of this executable (127.0.0.1, plain TCP, one CPU thread per node, the zoo
// mlp on MNIST), for each scenario
//   dp             dp 3 on 3 nodes, kill -9 of one replica's node (restored
//                  from the live replicas); also SIGSTOP of that node
//   pp-snapshot    pp 3 on 4 nodes (one spare), --snapshot-every 10, kill -9
//                  of stage 1's node
//   pp-checkpoint  pp 3 on 3 nodes, --checkpoint-every 10 --snapshot-every 0,
//                  kill -9 of stage 1's node (the job shrinks to 2 stages)
//   ppxdp          pp 2 x dp 2 on 4 nodes + 1 spare, --snapshot-every 10
//   ps-sync        a sync ps on node ps-0 + 2 workers, --snapshot-every 10,
//                  kill -9 of ps-0
// the same job runs once without a failure and once with it; from the second
// run's report (recovery.restarts[0]):
//   detection      detected_at (unix time) - the time the bench sent the signal
//   re-plan+restore  replan_seconds: detection .. the new generation runs
//   steps redone   steps_redone; the report's own seconds_lost
//   seconds lost   the run's wall time (submit .. client exit) - the
//                  failure-free run's, both in this invocation
// Peer (a), what operators do today: the same job with --max-restarts 0 and
// --checkpoint-every 10 fails at the same kill; the lost node is restarted
// and the job resubmitted with --resume at once (an operator is slower).
// Lost = failing run + resumed run - the same job's failure-free run.
// Peer (b): torchrun elastic (bench_recovery_torch.cpp).
// Overhead: pp 3 on 3 nodes with --snapshot-every N, or --checkpoint DIR
// --checkpoint-every N --snapshot-every 0, against --snapshot-every 0 and no
// checkpoint, N in 10/50/200: the trainer's mean step time (timed_seconds /
// timed_steps, background work included), configurations interleaved and
// rotated per repeat; overhead = median over repeats of the paired ratio - 1.

#include "apps/troupe/bench/bench_recovery.hpp"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "apps/troupe/bench/bench_recovery_runs.hpp"
#include "apps/troupe/bench/bench_util.hpp"
#include "runtime/error.hpp"
#include "runtime/io/temp_dir.hpp"

namespace troupe::apps {

namespace {

namespace fs = std::filesystem;
using namespace recovery_bench;

const std::vector<std::string> all_parts{"dp",      "pp-snapshot", "pp-checkpoint", "ppxdp",
                                         "ps-sync", "overhead",    "torchrun"};

/// The parts asked for (--scenarios), checked against all_parts.
std::set<std::string> chosen_parts(const std::string& list) {
  std::set<std::string> out;
  std::stringstream in(list);
  for (std::string p; std::getline(in, p, ',');) {
    if (p == "all") {
      out.insert(all_parts.begin(), all_parts.end());
    } else if (std::find(all_parts.begin(), all_parts.end(), p) == all_parts.end()) {
      throw runtime::input_error("--scenarios: unknown '" + p +
                                 "' (one of all, dp, pp-snapshot, "
                                 "pp-checkpoint, ppxdp, ps-sync, overhead, torchrun)");
    } else {
      out.insert(p);
    }
  }
  return out;
}

std::string fixed(double x, int digits = 2) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.*f", digits, x);
  return buf;
}

/// A figure the report may lack (-1): "-" then.
std::string known(double x, int digits = 2) {
  return x < 0 ? "-" : fixed(x, digits);
}

/// "12.3x" (peer lost / troupe lost), or "-" when one side is missing.
std::string ratio(double peer, double troupe, bool have_peer) {
  if (!have_peer || troupe <= 0 || peer <= 0)
    return "-";
  return fixed(peer / troupe, 1) + "x";
}

bool torch_ran(const torch_result& t) {
  return t.skipped.empty() && t.back_s > 0;
}

void print_row(const std::string& scenario, const char* sig, const fault_run& f, double lost,
               const std::optional<full_restart>& peer, const torch_result& torch) {
  const bool have_peer = peer && peer->back_s > 0, have_torch = torch_ran(torch);
  std::printf("%-13s %-7s %7s %7s %6s %7s %7s %7s %-10s %7s %6s %7s %7s %6s %7s\n",
              scenario.c_str(), sig, known(f.detection_s, 3).c_str(), known(f.replan_s).c_str(),
              std::to_string(f.steps_redone).c_str(), known(f.back_s).c_str(), fixed(lost).c_str(),
              known(f.report_lost_s).c_str(), f.source.c_str(),
              have_peer ? fixed(peer->back_s).c_str() : "-",
              ratio(have_peer ? peer->back_s : 0, f.back_s, have_peer).c_str(),
              have_peer ? fixed(peer->lost_s()).c_str() : "-",
              have_torch ? fixed(torch.back_s).c_str() : "-",
              ratio(torch.back_s, f.back_s, have_torch).c_str(),
              have_torch ? fixed(torch.lost_s()).c_str() : "-");
}

void print_legend() {
  std::printf(
      "detect = signal .. the supervisor's detection (report: detected_at); replan+rst = "
      "detection .. the new generation runs (replan_seconds); redone = steps_redone; back = "
      "signal .. the job has again done the steps it had done at the failure (report: "
      "detected_at + seconds_lost of the last restart); wall = wall time with the failure - "
      "without it, one pair of runs in this invocation (noisy on a busy machine; includes "
      "running on fewer devices afterwards); (report) = seconds_lost (detection .. the failed "
      "step done again). Peer a: the job with --max-restarts 0 and --checkpoint-every 10 "
      "fails, the lost node is restarted and the job resubmitted with --resume at once (an "
      "operator is slower); back = kill .. the resumed job has done the failed job's steps "
      "again (/status, polled every 10 ms); wall = failing + resumed run - its failure-free "
      "run. Peer b: torchrun elastic (--max_restarts 3), a DDP dp 3 script checkpointing "
      "every 10 steps, one worker killed at step 15; back = kill .. the restarted worker has "
      "done those steps again; the one torch run is compared with every row. a/trp, b/trp = "
      "peer back / troupe back.\n");
}

void print_table(const std::vector<scenario_result>& rs, const torch_result& torch) {
  std::printf("\n%-13s %-7s %7s %7s %6s %7s %7s %7s %-10s %7s %6s %7s %7s %6s %7s\n", "scenario",
              "signal", "detect", "replan", "redone", "back", "wall", "(report)", "source",
              "a back", "a/trp", "a wall", "b back", "b/trp", "b wall");
  std::printf("%-13s %-7s %7s %7s %6s %7s %7s %7s %-10s %7s %6s %7s %7s %6s %7s\n", "", "", "s",
              "+rst s", "steps", "s", "s", "s", "", "s", "", "s", "s", "", "s");
  for (const auto& r : rs) {
    print_row(r.name, "kill -9", r.kill, r.lost_s(), r.peer, torch);
    if (r.stop)
      print_row(r.name, "SIGSTOP", *r.stop, r.stop->wall_s - r.baseline_s, std::nullopt, torch);
  }
  print_legend();
  for (const auto& r : rs) {
    std::printf("  %s: failure-free %.2f s, with the kill %.2f s (killed at step %lld)",
                r.name.c_str(), r.baseline_s, r.kill.wall_s,
                static_cast<long long>(r.kill.at_step));
    if (r.peer)
      std::printf("; peer a: failure-free %.2f s, failing run %.2f s, resumed run %.2f s (from "
                  "step %lld)",
                  r.peer->baseline_s, r.peer->failed_s, r.peer->resumed_s,
                  static_cast<long long>(r.peer->resumed_from));
    std::printf("\n");
  }
  if (torch_ran(torch))
    std::printf("  torchrun (%s, --monitor_interval %s): failure-free %.2f s, with the kill %.2f "
                "s (killed at step %lld, restarted from step %lld, back at that step %.2f s after "
                "the kill)\n",
                torch.version.c_str(), number(torch.monitor_interval).c_str(), torch.baseline_s,
                torch.failed_s, static_cast<long long>(torch.kill_step),
                static_cast<long long>(torch.restored_step), torch.back_s);
  else
    std::printf("  torchrun: skipped (%s)\n", torch.skipped.c_str());
}

/// Overhead % (median of the paired per-repeat ratios - 1) with its range.
std::string overhead_text(const std::vector<double>& cfg, const std::vector<double>& base) {
  if (cfg.empty() || base.empty())
    return "-";
  const auto r = paired_ratio::of(cfg, base).per_repeat;
  char buf[64];
  std::snprintf(buf, sizeof buf, "%+.1f%% [%+.1f, %+.1f]", 100 * (r.median - 1), 100 * (r.min - 1),
                100 * (r.max - 1));
  return buf;
}

void print_overhead(const overhead_result& o, int steps) {
  std::printf("\nsnapshot / checkpoint overhead: pp 3 on 3 nodes, %d steps; without either a step "
              "takes %.2f ms (trainer) and %.2f ms of CPU (supervisor + nodes), medians of %zu; "
              "overhead in %% of that, median [min, max] of the paired per-repeat ratios\n",
              steps, 1e3 * summary::of(o.step.base).median, 1e3 * summary::of(o.cpu.base).median,
              o.step.base.size());
  std::printf("%-9s %-24s %-24s %-24s %-24s\n", "interval", "snapshot: step time", "snapshot: CPU",
              "checkpoint: step time", "checkpoint: CPU");
  for (std::size_t i = 0; i < o.intervals.size(); ++i)
    std::printf("%-9lld %-24s %-24s %-24s %-24s\n", static_cast<long long>(o.intervals[i]),
                overhead_text(o.step.snap[i], o.step.base).c_str(),
                overhead_text(o.cpu.snap[i], o.cpu.base).c_str(),
                overhead_text(o.step.ckpt[i], o.step.base).c_str(),
                overhead_text(o.cpu.ckpt[i], o.cpu.base).c_str());
}

/// Each target of issue 14 against what was measured; time lost is the
/// back-at-step figure (the wall difference is printed beside it).
void print_targets(const std::vector<scenario_result>& rs, const overhead_result* o,
                   const torch_result& torch) {
  std::printf("\ntargets (issue 14):\n");
  auto line = [](const std::string& what, bool ok, const std::string& got) {
    std::printf("  %-52s %-6s %s\n", what.c_str(), ok ? "met" : "MISSED", got.c_str());
  };
  for (const auto& r : rs) {
    line("detection <= 0.5 s, kill -9 (" + r.name + ")", r.kill.detection_s <= 0.5,
         fixed(r.kill.detection_s, 3) + " s");
    if (r.stop)
      line("detection <= 2 s, SIGSTOP (" + r.name + ")", r.stop->detection_s <= 2.0,
           fixed(r.stop->detection_s, 3) + " s");
    if (r.name == "dp" || r.name == "pp-snapshot") {
      const double limit = r.name == "dp" ? 2.0 : 5.0;
      line("seconds lost <= " + fixed(limit, 0) + " s (" + r.name + ")", r.kill.back_s <= limit,
           "back " + fixed(r.kill.back_s) + " s, wall " + fixed(r.lost_s()) + " s");
    }
    if (r.peer)
      line(">= 5x less lost than a full restart (" + r.name + ")",
           r.peer->back_s >= 5 * r.kill.back_s, ratio(r.peer->back_s, r.kill.back_s, true));
    if (torch_ran(torch))
      line(">= 5x less lost than torchrun (" + r.name + ")", torch.back_s >= 5 * r.kill.back_s,
           ratio(torch.back_s, r.kill.back_s, true));
  }
  if (o)
    for (std::size_t i = 0; i < o->intervals.size(); ++i)
      if (o->intervals[i] == 50 && !o->step.snap[i].empty()) {
        auto pct = [&](const overhead_result::figures& fig) {
          return 100 * (paired_ratio::of(fig.snap[i], fig.base).per_repeat.median - 1);
        };
        const double step = pct(o->step), cpu = pct(o->cpu);
        line("snapshot overhead <= 3% at interval 50", step <= 3.0,
             "step time " + fixed(step, 1) + "%, CPU " + fixed(cpu, 1) + "%");
      }
}

int bench_recovery(const flags& f) {
  const auto parts = chosen_parts(f.scenarios);
  for (const char* file : {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"})
    if (!fs::is_regular_file(fs::path{f.data_dir} / file))
      throw runtime::input_error("--data: no " + (fs::path{f.data_dir} / file).string());
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  std::printf("troupe bench recovery: %u cores, load %s; local cluster of node processes on "
              "127.0.0.1, zoo mlp on MNIST%s\n",
              cores, load_average().c_str(), f.quick ? " (--quick)" : "");
  std::fflush(stdout);
  runtime::temp_dir tmp_dir("troupe-bench-recovery-");
  const fs::path tmp = f.work_dir.empty() ? tmp_dir.path() : fs::absolute(f.work_dir);
  std::vector<scenario_result> results;
  for (const auto& s : default_scenarios(f.data_dir)) {
    if (!parts.count(s.name))
      continue;
    std::printf("scenario %s ...\n", s.name.c_str());
    std::fflush(stdout);
    const bool peer = !f.no_peers && (!f.quick || s.name == "dp");
    results.push_back(run_scenario(s, peer, tmp / s.name));
  }
  std::optional<overhead_result> overhead;
  if (parts.count("overhead")) {
    std::printf("overhead ...\n");
    std::fflush(stdout);
    overhead = run_overhead(f, tmp / "overhead");
  }
  torch_result torch;
  torch.skipped = f.no_peers ? "--no-peers" : "not asked for (--scenarios)";
  if (!f.no_peers && parts.count("torchrun")) {
    std::printf("torchrun ...\n");
    std::fflush(stdout);
    torch = run_torchrun(f, tmp / "torchrun");
  }
  print_table(results, torch);
  if (overhead)
    print_overhead(*overhead, f.overhead_steps);
  print_targets(results, overhead ? &*overhead : nullptr, torch);
  const auto load = load_average();
  std::printf("load average after: %s%s\n", load.c_str(), busy_note(load, cores));
  if (!f.json.empty()) {
    nlohmann::json doc{{"cores", cores},
                       {"load_average", load},
                       {"quick", f.quick},
                       {"torchrun", torch.to_json()}};
    for (const auto& r : results)
      doc["scenarios"].push_back(r.to_json());
    if (overhead)
      doc["overhead"] = overhead->to_json();
    write_json_file(f.json, doc);
  }
  return exit_ok;
}

void add_flags(CLI::App& cmd, flags& f) {
  cmd.add_option("--data", f.data_dir, "MNIST directory")->capture_default_str();
  cmd.add_option("--scenarios", f.scenarios,
                 "comma-separated: dp, pp-snapshot, pp-checkpoint, ppxdp, ps-sync, overhead, "
                 "torchrun, or all")
      ->capture_default_str();
  cmd.add_option("--repeats", f.repeats, "overhead: interleaved repeats of each configuration")
      ->check(CLI::Range(1, 100))
      ->capture_default_str();
  cmd.add_option("--overhead-steps", f.overhead_steps,
                 "overhead: steps per job (401: snapshots and checkpoints at every multiple of "
                 "the interval up to 400)")
      ->check(CLI::Range(20, 1000000))
      ->capture_default_str();
  cmd.add_flag("--quick", f.quick,
               "one overhead repeat at interval 50 only; the full restart (peer a) for dp only");
  cmd.add_flag("--no-peers", f.no_peers, "neither the full restart nor torchrun");
  cmd.add_option("--python", f.python, "the interpreter with torch (torchrun peer)")
      ->capture_default_str();
  cmd.add_option("--torch-peer", f.torch_peer,
                 "the torchrun DDP script (default: troupe_peer_ddp_elastic.py next to this "
                 "executable, else bench/peers/ddp_elastic.py)");
  cmd.add_option("--torch-monitor-interval", f.monitor_interval,
                 "torchrun's --monitor_interval in seconds (its default: 5)")
      ->check(CLI::Range(0.01, 60.0))
      ->capture_default_str();
  cmd.add_option("--json", f.json, "also write the figures to FILE");
  cmd.add_option("--work-dir", f.work_dir,
                 "keep the logs, reports and checkpoints in DIR (default: a temporary directory, "
                 "removed at the end)");
}

} // namespace

command_action add_bench_recovery_command(CLI::App& bench) {
  auto* cmd = bench.add_subcommand(
      "recovery", "recovery from a lost node: detection, re-plan + restore, steps redone and "
                  "seconds lost per scenario against a full restart and torchrun elastic; "
                  "snapshot and checkpoint overhead");
  auto f = std::make_shared<flags>();
  add_flags(*cmd, *f);
  return [f] {
    if (f->quick)
      f->repeats = 1;
    return bench_recovery(*f);
  };
}

} // namespace troupe::apps
