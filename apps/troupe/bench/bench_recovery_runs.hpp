#pragma once

// The parts of `troupe bench recovery` (see bench_recovery.cpp): a failure
// scenario on a local cluster of node processes with its failure-free run
// and the operator's full restart (peer a), the snapshot and checkpoint
// overhead, and PyTorch's torchrun elastic (peer b). Change here when a
// scenario or a figure is added.

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace troupe::apps::recovery_bench {

struct flags {
  std::string data_dir = "data/mnist";
  std::string scenarios = "all"; ///< comma-separated names, or all
  int repeats = 2;               ///< overhead: interleaved repeats
  /// Overhead: steps per job; 401 takes every interval's snapshots at
  /// 10, 20 .. 400 (k x interval < steps), so each costs its full share.
  int overhead_steps = 401;
  bool quick = false; ///< one repeat, interval 50 only, peer (a) for dp only
  bool no_peers = false;
  std::string python = "/usr/bin/python3";
  std::string torch_peer;      ///< empty: next to this executable, else the source tree's
  double monitor_interval = 5; ///< torchrun --monitor_interval (torchrun's default)
  std::string json;
  std::string work_dir; ///< empty: a temporary directory, removed at the end
};

/// One failure scenario: a job on a local cluster of named nodes, and the
/// node killed (kill -9) once the job has done `kill_step` steps.
struct scenario {
  std::string name;
  std::vector<std::string> nodes; ///< started in this order
  std::vector<std::string> job;   ///< the job's flags (model, degrees, steps, snapshots)
  std::string victim;             ///< part of a job actor's label: its node is killed
  std::int64_t kill_step = 25;
  std::int64_t checkpoint_every = 0; ///< > 0: the job writes --checkpoint DIR every N steps
  bool sigstop = false;              ///< also a run with SIGSTOP instead of kill -9
};

/// What one run with a failure measured (-1: not known).
struct fault_run {
  double wall_s = 0;         ///< the client's submit .. exit
  double back_s = -1;        ///< the signal .. the job is back at the step it had done then
  std::int64_t at_step = -1; ///< that step
  double detection_s = -1;   ///< the signal .. the report's detected_at
  double replan_s = -1;      ///< the report's replan_seconds (re-plan + restore)
  std::int64_t steps_redone = -1;
  double report_lost_s = -1; ///< the report's seconds_lost
  std::string source;        ///< restore source
  int restarts = 0;
  nlohmann::json to_json() const;
};

/// Peer (a): the job with --max-restarts 0 fails at the same kill; the lost
/// node is restarted and the job resubmitted at once with --resume.
struct full_restart {
  double baseline_s = 0; ///< the same job (checkpointing, no restarts) without a failure
  double failed_s = 0;   ///< submit .. the failed client's exit
  double resumed_s = 0;  ///< that exit .. the resumed client's exit
  double back_s = -1;    ///< the kill .. the resumed job is back at the step done then
  std::int64_t resumed_from = -1;
  double lost_s() const { return failed_s + resumed_s - baseline_s; }
};

struct scenario_result {
  std::string name;
  double baseline_s = 0; ///< the same job without a failure
  fault_run kill;
  std::optional<fault_run> stop; ///< SIGSTOP
  std::optional<full_restart> peer;
  double lost_s() const { return kill.wall_s - baseline_s; }
  nlohmann::json to_json() const;
};

/// The default scenarios (dp, pp with snapshots, pp with checkpoints, pp x dp,
/// ps sync), all `--model mlp` on MNIST in `data_dir`.
std::vector<scenario> default_scenarios(const std::string& data_dir);

/// Runs `s` on a fresh cluster in `dir`: the failure-free run, the run with
/// kill -9, the SIGSTOP run and (with_peer) peer (a).
scenario_result run_scenario(const scenario& s, bool with_peer, const std::filesystem::path& dir);

/// Per-step seconds of the same job with and without snapshots or periodic
/// checkpoints at each interval, interleaved over the repeats: the
/// trainer's step time, and the CPU time of the cluster's processes per
/// step (hardly changed by other load on the machine).
struct overhead_result {
  struct figures {
    std::vector<double> base;                    ///< per repeat
    std::vector<std::vector<double>> snap, ckpt; ///< [interval][repeat]
  };
  std::vector<std::int64_t> intervals;
  figures step, cpu;
  nlohmann::json to_json() const;
};
overhead_result run_overhead(const flags& f, const std::filesystem::path& dir);

/// Peer (b): torchrun elastic with a DDP script checkpointing every 10 steps,
/// the same kill -9 of one worker, against the same run without it.
struct torch_result {
  std::string skipped; ///< why it did not run; empty when it ran
  std::string version;
  double monitor_interval = 0;
  double baseline_s = 0, failed_s = 0;
  double back_s = -1; ///< the kill .. the restarted workers are back at the step done then
  std::int64_t kill_step = 0, restored_step = -1;
  double lost_s() const { return failed_s - baseline_s; }
  nlohmann::json to_json() const;
};
torch_result run_torchrun(const flags& f, const std::filesystem::path& dir);

} // namespace troupe::apps::recovery_bench
