#include "actors/schedule_simulation.hpp"

#include <algorithm>
#include <limits>

#include <fmt/format.h>

namespace troupe::actors {

namespace {

std::string name_of(const action& a) {
  return fmt::format("{}{}.{}", a.what == action::kind::forward ? 'F' : 'B', a.mb, a.chunk);
}

/// The first thing wrong with device `d`'s list, or an empty string.
std::string check_list(const std::vector<action>& list, int d, int virtual_stages,
                       int microbatches) {
  const auto cells = static_cast<std::size_t>(virtual_stages * microbatches);
  std::vector<char> forward(cells, 0), backward(cells, 0);
  for (const auto& a : list) {
    if (a.mb < 0 || a.mb >= microbatches || a.chunk < 0 || a.chunk >= virtual_stages)
      return fmt::format("device {}: {} is out of range", d, name_of(a));
    auto i = static_cast<std::size_t>(a.chunk * microbatches + a.mb);
    if (a.what == action::kind::forward) {
      if (forward[i]++)
        return fmt::format("device {}: {} appears twice", d, name_of(a));
    } else {
      if (!forward[i])
        return fmt::format("device {}: {} comes before its forward", d, name_of(a));
      if (backward[i]++)
        return fmt::format("device {}: {} appears twice", d, name_of(a));
    }
  }
  for (std::size_t i = 0; i < cells; ++i)
    if (!forward[i] || !backward[i])
      return fmt::format("device {}: micro-batch {} of chunk {} misses its {}", d,
                         i % static_cast<std::size_t>(microbatches),
                         i / static_cast<std::size_t>(microbatches),
                         forward[i] ? "backward" : "forward");
  return {};
}

} // namespace

schedule_simulation simulate(const std::vector<std::vector<action>>& schedules, int stages,
                             int virtual_stages, int microbatches, int forward_steps,
                             int backward_steps) {
  schedule_simulation r;
  if (stages < 1 || virtual_stages < 1 || microbatches < 1 || forward_steps < 1 ||
      backward_steps < 1 || schedules.size() != static_cast<std::size_t>(stages)) {
    r.error = "simulate: need one list per device and positive sizes and durations";
    return r;
  }
  for (int d = 0; d < stages; ++d) {
    r.peak_in_flight.push_back(peak_in_flight(schedules[static_cast<std::size_t>(d)]));
    if (auto e = check_list(schedules[static_cast<std::size_t>(d)], d, virtual_stages,
                            microbatches);
        !e.empty()) {
      r.error = e;
      return r;
    }
  }
  // When each (stage, micro-batch) forward and backward finishes; -1: not started.
  const int total_stages = stages * virtual_stages;
  auto cell = [&](int s, int mb) { return static_cast<std::size_t>(s * microbatches + mb); };
  std::vector<int> f_done(static_cast<std::size_t>(total_stages * microbatches), -1);
  std::vector<int> b_done(f_done.size(), -1);
  auto finished = [](int at, int now) { return at >= 0 && at <= now; };
  std::vector<std::size_t> pc(schedules.size(), 0);
  std::vector<int> free_at(schedules.size(), 0);
  for (int now = 0;;) {
    for (int d = 0; d < stages; ++d) {
      auto du = static_cast<std::size_t>(d);
      if (free_at[du] > now || pc[du] == schedules[du].size())
        continue;
      const auto& a = schedules[du][pc[du]];
      const int s = a.chunk * stages + d;
      bool ready = a.what == action::kind::forward
                     ? s == 0 || finished(f_done[cell(s - 1, a.mb)], now)
                     : finished(f_done[cell(s, a.mb)], now) &&
                         (s == total_stages - 1 || finished(b_done[cell(s + 1, a.mb)], now));
      if (!ready)
        continue;
      const bool fwd = a.what == action::kind::forward;
      free_at[du] = now + (fwd ? forward_steps : backward_steps);
      (fwd ? f_done : b_done)[cell(s, a.mb)] = free_at[du];
      ++pc[du];
      r.makespan = std::max(r.makespan, free_at[du]);
    }
    // Jump to the next time a running action finishes; none running: done or stuck.
    int next = std::numeric_limits<int>::max();
    for (int t : free_at)
      if (t > now)
        next = std::min(next, t);
    if (next == std::numeric_limits<int>::max())
      break;
    now = next;
  }
  for (int d = 0; d < stages; ++d) {
    auto du = static_cast<std::size_t>(d);
    if (pc[du] < schedules[du].size())
      r.error += fmt::format("{}device {} waits at {}", r.error.empty() ? "deadlock: " : ", ", d,
                             name_of(schedules[du][pc[du]]));
  }
  r.completed = r.error.empty();
  return r;
}

} // namespace troupe::actors
