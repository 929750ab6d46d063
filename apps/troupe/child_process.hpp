#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace troupe::apps {

/// Waits up to `timeout` (polling waitpid every `poll`) for child `pid` to
/// exit: its exit status (128 + signal when killed), -1 when it is not our
/// child (nothing to wait for), nullopt when it still runs.
std::optional<int> wait_for_exit(pid_t pid, std::chrono::milliseconds timeout,
                                 std::chrono::milliseconds poll);

/// A process a benchmark starts (`troupe bench pipeline --processes`: a
/// supervisor, nodes, clients): argv run without a shell, stdin from
/// /dev/null, stdout and stderr into `log`. It is stopped (SIGTERM, then
/// SIGKILL) and reaped when the object goes, so a failing benchmark leaves
/// no process behind.
class child_process {
public:
  /// Throws std::runtime_error when it cannot be started.
  child_process(const std::vector<std::string>& argv, std::filesystem::path log);
  ~child_process();
  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;

  /// Its exit status (128 + signal when killed) once it has exited, waiting
  /// up to `timeout`; nullopt while it still runs.
  std::optional<int> wait_for(std::chrono::milliseconds timeout);
  /// SIGTERM, up to `grace` to exit, then SIGKILL; reaps it.
  void stop(std::chrono::milliseconds grace = std::chrono::seconds(3));
  /// The last `bytes` of its log, for error messages.
  std::string log_tail(std::size_t bytes = 2000) const;
  pid_t pid() const { return pid_; }

private:
  pid_t pid_ = -1;
  std::optional<int> status_;
  std::filesystem::path log_;
};

} // namespace troupe::apps
