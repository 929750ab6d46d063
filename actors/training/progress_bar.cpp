#include "actors/training/progress_bar.hpp"

#include <cstdio>
#include <string>

#include <unistd.h>

namespace troupe::actors::training {

progress_bar::progress_bar() : tty_(isatty(2) != 0) {}

void progress_bar::start(int epoch, int epochs, std::int64_t steps) {
  epoch_ = epoch;
  epochs_ = epochs;
  steps_ = steps;
  last_quarter_ = -1;
  last_draw_ = {};
}

void progress_bar::update(std::int64_t done, double samples_per_s, double loss, bool force) {
  if (tty_)
    draw_bar(done, samples_per_s, loss, force);
  else
    print_line(done, samples_per_s, loss, force);
}

void progress_bar::draw_bar(std::int64_t done, double samples_per_s, double loss, bool force) {
  auto now = clock_type::now();
  if (!force && std::chrono::duration<double>(now - last_draw_).count() < 0.1)
    return;
  last_draw_ = now;
  const int width = 30;
  const int filled = steps_ ? static_cast<int>(width * done / steps_) : width;
  std::string bar(static_cast<std::size_t>(filled), '#');
  bar.resize(static_cast<std::size_t>(width), '.');
  std::fprintf(stderr, "\repoch %d/%d [%s] %lld/%lld  %.0f samples/s  loss %.4f ", epoch_, epochs_,
               bar.c_str(), static_cast<long long>(done), static_cast<long long>(steps_),
               samples_per_s, loss);
  if (force)
    std::fprintf(stderr, "\n");
  std::fflush(stderr);
}

void progress_bar::print_line(std::int64_t done, double samples_per_s, double loss, bool force) {
  const int quarter = steps_ ? static_cast<int>(4 * done / steps_) : 4;
  if (quarter == last_quarter_ && !force)
    return;
  last_quarter_ = quarter;
  std::fprintf(stderr, "epoch %d/%d %lld/%lld steps  %.0f samples/s  loss %.4f\n", epoch_, epochs_,
               static_cast<long long>(done), static_cast<long long>(steps_), samples_per_s, loss);
  std::fflush(stderr);
}

} // namespace troupe::actors::training
