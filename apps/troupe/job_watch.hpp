#pragma once

// How `troupe train --supervisor` shows the events of its job
// (actors/cluster/job_event.hpp) while it runs: a progress bar and plain
// lines on a terminal, a plain progress line every few seconds otherwise,
// one JSON object per line with --json-progress, nothing with --quiet.

#include <chrono>
#include <cstdint>

#include <nlohmann/json.hpp>

#include "actors/cluster/job_event.hpp"
#include "actors/training/progress_bar.hpp"

namespace troupe::apps {

enum class watch_mode {
  quiet, ///< only the final summary
  json,  ///< every event as a JSON line on stdout
  human, ///< bar (terminal) or progress lines, plain lines for the rest, on stderr
};

class job_watch {
public:
  /// `progress`: show progress events (human mode; --no-progress hides them).
  job_watch(watch_mode mode, bool progress);
  /// Whether the client should ask the supervisor for events at all.
  bool wants_events() const { return mode_ != watch_mode::quiet; }
  watch_mode mode() const { return mode_; }
  void show(const actors::job_event& e);
  /// With --json-progress: the summary event of the final report `r`
  /// (strategy, steps, final_loss, test figures, samples_per_second,
  /// wall_seconds), the last line on stdout.
  void show_summary(const nlohmann::json& r);

private:
  using clock_type = std::chrono::steady_clock;
  void show_progress(const actors::job_event& e);
  void end_bar_line();

  watch_mode mode_;
  bool progress_;
  bool tty_;
  actors::training::progress_bar bar_;
  int bar_epoch_ = 0;
  bool bar_open_ = false; ///< a bar is drawn without its newline
  clock_type::time_point last_line_{};
  std::uint64_t job_ = 0; ///< the job id its events carried
};

} // namespace troupe::apps
