#pragma once

// The parts of `troupe bench hetero` (see bench_hetero.cpp): scripts/throttle
// driven from C++ (the cgroups made are cleared when their guards go), local
// clusters of a node `a` on core 0 and a node `b` on core 1 under a CPU
// quota, the data-parallel, mid-run and pipeline jobs on them, and PyTorch
// DDP under the same throttling. Change here when a part or a figure is added.

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace troupe::apps::hetero_bench {

struct flags {
  std::string data_dir = "data/mnist";
  std::int64_t steps = 300;
  int batch = 256;
  std::vector<double> ratios{2, 3}; ///< a's speed / b's: b gets 1/ratio of a core
  int microbatches = 8;             ///< pipeline part
  int repeats = 1;                  ///< runs of each job, interleaved; the median counts
  std::string json;
  bool quick = false; ///< fewer steps and hand-set trials (a smoke test)
  bool no_peer = false;
  std::string throttle_script; ///< empty: found next to the build or in ./scripts
  std::string python = "/usr/bin/python3";
  std::string ddp_peer; ///< empty: next to this executable, else bench/peers/ddp_mlp.py
  std::string work_dir; ///< empty: a temporary directory, removed at the end
};

/// scripts/throttle run as a child process (its output into `log_dir`).
class throttle {
public:
  throttle(std::filesystem::path script, std::filesystem::path log_dir);
  /// Why it cannot throttle here (`check`'s message), or nullopt when it can.
  std::optional<std::string> unavailable() const;
  /// Group troupe-NAME gets `fraction` of a core and `pid` goes into it.
  void set(const std::string& name, pid_t pid, double fraction) const;
  /// Its processes back to the root group, the group removed; throws on failure.
  void clear(const std::string& name) const;
  /// argv that runs a command in troupe-NAME at `fraction` from its start.
  std::vector<std::string> run_prefix(const std::string& name, double fraction) const;

private:
  /// Runs the script with `args`; its exit status and output.
  int call(const std::vector<std::string>& args, std::string& output) const;
  std::filesystem::path script_, log_dir_;
};

/// A cgroup this bench may make (troupe-NAME): cleared when the guard goes,
/// also when the bench fails.
class throttle_group {
public:
  throttle_group(const throttle& t, std::string name) : t_(t), name_(std::move(name)) {}
  ~throttle_group();
  throttle_group(const throttle_group&) = delete;
  throttle_group& operator=(const throttle_group&) = delete;
  const std::string& name() const { return name_; }

private:
  const throttle& t_;
  std::string name_;
};

/// What every part needs: the flags, the throttle, where logs go, taskset.
struct context {
  const flags& f;
  const throttle& thr;
  std::filesystem::path dir;
  std::string taskset;      ///< full path (child processes are not run by a shell)
  std::string group_prefix; ///< "hetero-<pid>": groups of concurrent benches never clash
  int cores = 2;
};

/// One replica's or stage's share of a job's time (the report's stages[]).
struct stage_time {
  int replica = 0, stage = 0;
  std::string node;
  std::vector<int> layers; ///< [first, last) from the plan
  double compute_ms = 0;   ///< per step
  double allreduce_ms = 0; ///< per step, waiting for the other replica included
  nlohmann::json to_json() const;
};

/// One job's figures from its report.
struct job_result {
  std::string label;
  std::vector<std::string> args; ///< the job's own flags (no report/data paths)
  double samples_per_second = 0; ///< the report's (the whole run, re-planning included)
  double step_ms = 0;            ///< train_seconds / steps
  std::int64_t steps = 0;
  std::vector<double> batch_shares; ///< the plan's
  std::vector<stage_time> stages;
  nlohmann::json rebalances;   ///< the report's balance.rebalances, null when absent
  std::vector<double> repeats; ///< samples/s of every repeat (this is the median one)
  double throttled_at_s = -1;  ///< mid-run: seconds after submit the quota changed
  std::int64_t throttled_at_step = -1;
  /// Mid-run: samples/s from the change to the last step (/status), the
  /// new speeds' throughput.
  double after_samples_per_second = -1;
  nlohmann::json to_json() const;
};

/// Data parallelism at one speed ratio.
struct ratio_result {
  double ratio = 0;
  job_result equal, automatic, b_alone;
  std::vector<job_result> hand; ///< --batch-shares k,1 for each k tried
  const job_result& best_hand() const;
  nlohmann::json to_json() const;
};

/// b slowed to 1/3 of a core a third into the run.
struct midrun_result {
  double fraction = 0;
  job_result off, automatic;
  nlohmann::json to_json() const;
};

/// A pipeline of 2 stages over a (fast) and b (slowed).
struct pipeline_result {
  double ratio = 0;
  job_result automatic, flops;
  std::vector<job_result> splits; ///< every contiguous split
  const job_result& best_split() const;
  nlohmann::json to_json() const;
};

/// PyTorch DDP, 2 processes pinned like the nodes, rank 1 throttled.
struct peer_result {
  std::string skipped; ///< why it did not run; empty when it ran
  std::string torch_version;
  std::vector<std::pair<double, double>> samples_per_second; ///< (ratio, samples/s)
  nlohmann::json to_json() const;
};

/// The job's flags common to every run (model, data, batch, steps).
std::vector<std::string> base_args(const flags& f);

/// Node `name` alone on its own cluster (pinned to `core`, at `fraction` of
/// it): a dp-1 job's figures, one half of the ideal.
job_result run_alone(const context& x, const std::string& name, int core, double fraction);

/// Equal shares, --balance auto and --batch-shares k,1 for each k in
/// `trials` at `ratio`, and b alone at that speed.
ratio_result run_ratio(const context& x, double ratio, const std::vector<double>& trials);

/// b unthrottled, then at 1/`ratio` of its core once the job has done a
/// third of its steps; once with --balance off, once with auto.
midrun_result run_midrun(const context& x, double ratio);

/// --pp 2 over a and b at 1/`ratio`: auto, flops partition, every split.
pipeline_result run_pipeline(const context& x, double ratio);

/// DDP (bench/peers/ddp_mlp.py) at each ratio, equal split (all it can do).
peer_result run_peer(const context& x);

} // namespace troupe::apps::hetero_bench
