#pragma once

// The progress line of an epoch on stderr (`troupe train --progress`). Change
// it for how progress looks on a terminal or in a log.

#include <chrono>
#include <cstdint>

namespace troupe::actors::training {

/// A progress line per epoch: a bar on a terminal (redrawn at most every
/// 0.1 s), a line per quarter otherwise (logs stay short).
class progress_bar {
public:
  progress_bar();
  void start(int epoch, int epochs, std::int64_t steps);
  /// `force`: draw now and end the line (the epoch's last step).
  void update(std::int64_t done, double samples_per_s, double loss, bool force = false);

private:
  using clock_type = std::chrono::steady_clock;
  void draw_bar(std::int64_t done, double samples_per_s, double loss, bool force);
  void print_line(std::int64_t done, double samples_per_s, double loss, bool force);

  bool tty_ = false;
  int epoch_ = 0, epochs_ = 0, last_quarter_ = -1;
  std::int64_t steps_ = 0;
  clock_type::time_point last_draw_;
};

} // namespace troupe::actors::training
