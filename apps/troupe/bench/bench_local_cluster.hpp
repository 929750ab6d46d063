#pragma once

// `troupe bench pipeline --processes`: a supervisor and node processes on
// 127.0.0.1 that benchmark jobs are submitted to. Change here when the
// supervisor's or node's command line changes.

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "actors/plan/train_options.hpp"
#include "apps/troupe/child_process.hpp"

namespace troupe::apps {

/// --processes: a supervisor and one node process per stage on 127.0.0.1
/// (plain TCP, which troupe allows on loopback only), all this executable;
/// jobs are submitted as `troupe train --supervisor`.
class local_cluster {
public:
  /// Starts the supervisor (expecting `nodes` nodes and `jobs` jobs) and the
  /// nodes, each with one CPU device of `threads_per_device` threads; logs
  /// and the supervisor's info file in `dir`. Throws when they do not start.
  local_cluster(const std::filesystem::path& dir, int nodes, int threads_per_device, int jobs);

  /// Runs the job as a client process; its report.
  nlohmann::json train(const actors::train_options& o, int index);

private:
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

  std::filesystem::path dir_;
  std::string exe_;
  int port_ = 0;
  std::unique_ptr<child_process> supervisor_; // stopped last
  std::vector<std::unique_ptr<child_process>> nodes_;
};

} // namespace troupe::apps
