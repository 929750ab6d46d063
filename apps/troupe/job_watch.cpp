#include "apps/troupe/job_watch.hpp"

#include <cstdio>

#include <unistd.h>

namespace troupe::apps {

namespace {

/// A plain progress line at most this often when stderr is not a terminal:
/// a log shows the job moving without a line per step.
constexpr std::chrono::seconds line_interval{3};

} // namespace

job_watch::job_watch(watch_mode mode, bool progress)
    : mode_(mode), progress_(progress), tty_(isatty(2) != 0) {}

void job_watch::show(const actors::job_event& e) {
  using actors::job_event_kind;
  job_ = e.job;
  switch (mode_) {
  case watch_mode::quiet:
    return;
  case watch_mode::json:
    std::printf("%s\n", to_json(e).dump().c_str());
    std::fflush(stdout);
    return;
  case watch_mode::human:
    break;
  }
  if (e.kind == job_event_kind::progress) {
    if (progress_)
      show_progress(e);
    return;
  }
  if (e.kind == job_event_kind::summary)
    return; // the command prints it on stdout
  end_bar_line();
  std::fprintf(stderr, "%s\n", describe(e).c_str());
  std::fflush(stderr);
}

void job_watch::show_progress(const actors::job_event& e) {
  const auto& f = e.fields;
  const auto epoch = f.value("epoch", 0);
  const auto done = f.value("epoch_step", std::int64_t{0});
  const auto steps = f.value("epoch_steps", std::int64_t{0});
  const bool epoch_end =
      done >= steps || f.value("step", std::int64_t{0}) >= f.value("total_steps", std::int64_t{0});
  if (tty_) {
    if (epoch != bar_epoch_) {
      end_bar_line();
      bar_.start(epoch, f.value("epochs", 0), steps);
      bar_epoch_ = epoch;
    }
    bar_.update(done, f.value("samples_per_second", 0.0), f.value("loss", 0.0), epoch_end);
    bar_open_ = !epoch_end;
    return;
  }
  const auto now = clock_type::now();
  if (!epoch_end && last_line_ != clock_type::time_point{} && now - last_line_ < line_interval)
    return;
  last_line_ = now;
  std::fprintf(stderr, "%s\n", describe(e).c_str());
  std::fflush(stderr);
}

void job_watch::show_summary(const nlohmann::json& r) {
  actors::job_event e{actors::job_event_kind::summary, job_, actors::job_event_now(), {}};
  for (const char* k : {"model", "strategy", "steps", "final_loss", "test_accuracy", "test_mse",
                        "test_mae", "bits_per_char", "samples_per_second", "wall_seconds"})
    if (r.contains(k))
      e.fields[k] = r.at(k);
  show(e);
}

void job_watch::end_bar_line() {
  if (!bar_open_)
    return;
  std::fprintf(stderr, "\n");
  bar_open_ = false;
}

} // namespace troupe::apps
