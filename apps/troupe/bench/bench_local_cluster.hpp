#pragma once

// `troupe bench pipeline --processes`, `recovery` and `hetero`: a
// supervisor and node processes on 127.0.0.1 that benchmark jobs are
// submitted to. Change here when the supervisor's or node's command line or
// its /status changes.

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "actors/plan/train_options.hpp"
#include "apps/troupe/child_process.hpp"

namespace troupe::apps {

/// How one node process starts: `prefix` runs it (e.g. `taskset -c 1`, or
/// scripts/throttle run NAME FRACTION, which exec the troupe binary in the
/// same process), and `measure` keeps the node's device speed measurement
/// (which `troupe bench hetero` needs; other benches skip it to start fast).
struct node_launch {
  std::vector<std::string> prefix; ///< argv before the troupe binary's; prefix[0] a full path
  bool measure = false;
};

/// A supervisor and node processes on 127.0.0.1 (plain TCP, which troupe
/// allows on loopback only), all this executable; jobs are submitted as
/// `troupe train --supervisor`. Every process it started is stopped when it
/// goes (stopped nodes are continued first), also on an exception.
class local_cluster {
public:
  /// Starts the supervisor (expecting `nodes` nodes and `jobs` jobs) and the
  /// nodes "node-0" .., each with one CPU device of `threads_per_device`
  /// threads; logs and the supervisor's info file in `dir`. Throws when they
  /// do not start.
  local_cluster(const std::filesystem::path& dir, int nodes, int threads_per_device, int jobs);

  /// A supervisor that runs jobs until stopped, and the nodes `names`
  /// started in this order, each ready before the next starts (the planner
  /// prefers nodes named "ps-*" for parameter servers either way, but the
  /// order of joining is then the order of the plan's devices).
  local_cluster(const std::filesystem::path& dir, const std::vector<std::string>& names,
                int threads_per_device);
  /// The same, node names[k] started as launches[k] says (when there is one).
  local_cluster(const std::filesystem::path& dir, const std::vector<std::string>& names,
                int threads_per_device, const std::vector<node_launch>& launches);

  ~local_cluster();
  local_cluster(const local_cluster&) = delete;
  local_cluster& operator=(const local_cluster&) = delete;

  /// Runs the job as a client process; its report.
  nlohmann::json train(const actors::train_options& o, int index);

  /// Starts a client `troupe train --supervisor ADDR <args>` logging into
  /// `dir/<name>.log`, without waiting for it.
  std::unique_ptr<child_process> submit(const std::vector<std::string>& args,
                                        const std::string& name) const;

  /// Starts one more node (a spare, or a replacement of a lost one).
  void add_node(const std::string& name, const node_launch& how = {});
  /// Waits until `count` nodes are ready; throws after `timeout`.
  void wait_ready(std::size_t count, std::chrono::milliseconds timeout) const;

  /// The supervisor's GET /status.
  nlohmann::json status() const;
  /// The process of node `name`; throws unless it started one that still
  /// runs (signals never go to an exited node's pid).
  pid_t node_pid(const std::string& name);
  /// CPU seconds (user + system) the supervisor and the running nodes have
  /// used so far: a job's cost that other load on the machine hardly changes.
  double cpu_seconds();
  std::string supervisor_log_tail() const { return supervisor_->log_tail(); }
  const std::filesystem::path& dir() const { return dir_; }

private:
  void start_supervisor(int nodes, int jobs);
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

  std::filesystem::path dir_;
  std::string exe_;
  int threads_per_device_ = 1;
  int port_ = 0;
  int status_port_ = 0;
  std::unique_ptr<child_process> supervisor_; // stopped last
  std::vector<std::pair<std::string, std::unique_ptr<child_process>>> nodes_;
};

} // namespace troupe::apps
