#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace troupe::apps {

/// A helper process a benchmark drives line by line (`troupe bench allreduce
/// --processes`: one rank process per rank): argv run without a shell, its
/// stdin and stdout pipes to this process, stderr into `log`. Killed
/// (SIGKILL) and reaped when the object goes, so a failing benchmark leaves no
/// process behind.
class line_process {
public:
  /// Throws std::runtime_error when it cannot be started.
  line_process(const std::vector<std::string>& argv, std::filesystem::path log);
  ~line_process();
  line_process(const line_process&) = delete;
  line_process& operator=(const line_process&) = delete;

  /// Writes `line` and a newline to its stdin; throws when it has gone.
  void send_line(const std::string& line);
  /// The next line of its stdout (without the newline), waiting up to
  /// `timeout`; throws std::runtime_error on a timeout or when it closed its
  /// stdout (exited), with the tail of its log.
  std::string read_line(std::chrono::milliseconds timeout);
  /// Closes its stdin (a rank process exits on end of input) and waits up to
  /// `grace` for it to exit, then kills it. Returns its exit status (128 +
  /// signal when killed).
  int finish(std::chrono::milliseconds grace = std::chrono::seconds(5));
  /// The last `bytes` of its log, for error messages.
  std::string log_tail(std::size_t bytes = 2000) const;
  pid_t pid() const { return pid_; }

private:
  std::optional<int> reap(std::chrono::milliseconds timeout);

  pid_t pid_ = -1;
  int to_child_ = -1;
  int from_child_ = -1;
  std::string pending_; ///< bytes read past the last line returned
  std::optional<int> status_;
  std::filesystem::path log_;
};

} // namespace troupe::apps
