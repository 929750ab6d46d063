#include "actors/plan/schedule_simulation.hpp"

#include <algorithm>
#include <cmath>
#include <set>

#include <fmt/format.h>

namespace troupe::actors {

namespace {

char letter(action::kind k) {
  return k == action::kind::forward ? 'F' : k == action::kind::backward ? 'B' : 'W';
}

std::string name_of(const action& a) {
  return fmt::format("{}{}.{}", letter(a.what), a.mb, a.chunk);
}

/// The first thing wrong with device `d`'s list, or an empty string.
std::string check_list(const std::vector<action>& list, int d, int virtual_stages,
                       int microbatches) {
  const auto cells = static_cast<std::size_t>(virtual_stages * microbatches);
  std::vector<char> forward(cells, 0), backward(cells, 0), weight(cells, 0);
  const bool split = std::any_of(list.begin(), list.end(),
                                 [](const action& a) { return a.what == action::kind::weight; });
  for (const auto& a : list) {
    if (a.mb < 0 || a.mb >= microbatches || a.chunk < 0 || a.chunk >= virtual_stages)
      return fmt::format("device {}: {} is out of range", d, name_of(a));
    auto i = static_cast<std::size_t>(a.chunk * microbatches + a.mb);
    auto& seen = a.what == action::kind::forward    ? forward
                 : a.what == action::kind::backward ? backward
                                                    : weight;
    const auto& before = a.what == action::kind::weight ? backward : forward;
    if (a.what != action::kind::forward && !before[i])
      return fmt::format("device {}: {} comes before its {}", d, name_of(a),
                         a.what == action::kind::weight ? "backward" : "forward");
    if (seen[i]++)
      return fmt::format("device {}: {} appears twice", d, name_of(a));
  }
  for (std::size_t i = 0; i < cells; ++i)
    if (!forward[i] || !backward[i] || (split && !weight[i]))
      return fmt::format("device {}: micro-batch {} of chunk {} misses its {}", d,
                         i % static_cast<std::size_t>(microbatches),
                         i / static_cast<std::size_t>(microbatches),
                         !forward[i]    ? "forward"
                         : !backward[i] ? "backward"
                                        : "weight action");
  return {};
}

/// Whether action `a` of virtual stage `s` can start at `now`, given when
/// each (stage, micro-batch) forward and backward finished (-1: not yet).
struct finish_times {
  int total_stages = 0;
  int microbatches = 0;
  std::vector<double> forward, backward;

  std::size_t cell(int s, int mb) const { return static_cast<std::size_t>(s * microbatches + mb); }
  static bool by(double at, double now) { return at >= 0 && at <= now; }
  bool ready(const action& a, int s, double now) const {
    switch (a.what) {
    case action::kind::forward:
      return s == 0 || by(forward[cell(s - 1, a.mb)], now);
    case action::kind::backward:
      return by(forward[cell(s, a.mb)], now) &&
             (s == total_stages - 1 || by(backward[cell(s + 1, a.mb)], now));
    case action::kind::weight:
      return by(backward[cell(s, a.mb)], now);
    }
    return false;
  }
};

/// simulate()'s event loop over measured durations (checked by the callers).
schedule_simulation run(const std::vector<std::vector<action>>& schedules, int stages,
                        int virtual_stages, int microbatches, const action_costs& costs,
                        chunk_layout layout) {
  schedule_simulation r;
  for (int d = 0; d < stages; ++d) {
    r.peak_in_flight.push_back(peak_in_flight(schedules[static_cast<std::size_t>(d)]));
    if (auto e =
            check_list(schedules[static_cast<std::size_t>(d)], d, virtual_stages, microbatches);
        !e.empty()) {
      r.error = e;
      return r;
    }
  }
  finish_times done{stages * virtual_stages, microbatches, {}, {}};
  done.forward.assign(static_cast<std::size_t>(done.total_stages * microbatches), -1);
  done.backward = done.forward;
  const auto& tail_cost = costs.tail;
  std::vector<std::size_t> pc(schedules.size(), 0);
  std::vector<double> free_at(schedules.size(), 0);
  r.busy.assign(schedules.size(), 0.0);
  std::set<double> pending; // times at which an action or a tail ends
  for (double now = 0;;) {
    for (int d = 0; d < stages; ++d) {
      auto du = static_cast<std::size_t>(d);
      if (free_at[du] > now || pc[du] == schedules[du].size())
        continue;
      const auto& a = schedules[du][pc[du]];
      const int s = virtual_stage(layout, stages, d, a.chunk);
      if (!done.ready(a, s, now))
        continue;
      const auto chunk = static_cast<std::size_t>(a.chunk);
      const auto& cost_of = a.what == action::kind::forward    ? costs.forward
                            : a.what == action::kind::backward ? costs.backward
                                                               : costs.weight;
      const double cost = cost_of[du][chunk];
      free_at[du] = now + cost;
      r.busy[du] += cost;
      if (a.what != action::kind::weight)
        (a.what == action::kind::forward ? done.forward : done.backward)[done.cell(s, a.mb)] =
            free_at[du];
      pending.insert(free_at[du]);
      if (++pc[du] == schedules[du].size() && du < tail_cost.size()) {
        free_at[du] += tail_cost[du];
        r.busy[du] += tail_cost[du];
        pending.insert(free_at[du]);
      }
      r.time = std::max(r.time, free_at[du]);
    }
    // Jump to the next time something finishes; nothing running: done or stuck.
    pending.erase(pending.begin(), pending.upper_bound(now));
    if (pending.empty())
      break;
    now = *pending.begin();
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

bool shaped(const std::vector<std::vector<double>>& costs, int stages, int virtual_stages) {
  return costs.size() == static_cast<std::size_t>(stages) &&
         std::all_of(costs.begin(), costs.end(), [&](const std::vector<double>& row) {
           return row.size() == static_cast<std::size_t>(virtual_stages) &&
                  std::all_of(row.begin(), row.end(),
                              [](double c) { return std::isfinite(c) && c > 0; });
         });
}

} // namespace

double schedule_simulation::bubble() const {
  if (busy.empty() || time <= 0)
    return 0;
  double sum = 0;
  for (double b : busy)
    sum += b;
  return 1.0 - sum / (static_cast<double>(busy.size()) * time);
}

schedule_simulation simulate(const std::vector<std::vector<action>>& schedules, int stages,
                             int virtual_stages, int microbatches, int forward_steps,
                             int backward_steps, int weight_steps, chunk_layout layout) {
  if (stages < 1 || virtual_stages < 1 || microbatches < 1 || forward_steps < 1 ||
      backward_steps < 1 || weight_steps < 1 ||
      schedules.size() != static_cast<std::size_t>(stages)) {
    schedule_simulation r;
    r.error = "simulate: need one list per device and positive sizes and durations";
    return r;
  }
  auto row = [&](int steps) {
    return std::vector<std::vector<double>>(
        static_cast<std::size_t>(stages),
        std::vector<double>(static_cast<std::size_t>(virtual_stages), static_cast<double>(steps)));
  };
  auto r = run(schedules, stages, virtual_stages, microbatches,
               {row(forward_steps), row(backward_steps), row(weight_steps), {}}, layout);
  r.makespan = static_cast<int>(std::lround(r.time)); // sums of whole steps: exact
  return r;
}

schedule_simulation simulate(const std::vector<std::vector<action>>& schedules, int stages,
                             int virtual_stages, int microbatches,
                             const std::vector<std::vector<double>>& forward_cost,
                             const std::vector<std::vector<double>>& backward_cost,
                             const std::vector<double>& tail_cost) {
  return simulate(schedules, stages, virtual_stages, microbatches,
                  action_costs{forward_cost, backward_cost, {}, tail_cost});
}

schedule_simulation simulate(const std::vector<std::vector<action>>& schedules, int stages,
                             int virtual_stages, int microbatches, const action_costs& costs,
                             chunk_layout layout) {
  const bool split = std::any_of(schedules.begin(), schedules.end(), [](const auto& list) {
    return std::any_of(list.begin(), list.end(),
                       [](const action& a) { return a.what == action::kind::weight; });
  });
  const auto& tail_cost = costs.tail;
  if (stages < 1 || virtual_stages < 1 || microbatches < 1 ||
      schedules.size() != static_cast<std::size_t>(stages) ||
      !shaped(costs.forward, stages, virtual_stages) ||
      !shaped(costs.backward, stages, virtual_stages) ||
      (split && !shaped(costs.weight, stages, virtual_stages)) ||
      (!tail_cost.empty() && tail_cost.size() != static_cast<std::size_t>(stages)) ||
      !std::all_of(tail_cost.begin(), tail_cost.end(),
                   [](double c) { return std::isfinite(c) && c >= 0; })) {
    schedule_simulation r;
    r.error = "simulate: need one list per device, positive sizes and a positive cost per "
              "device and chunk (weight costs too for weight actions)";
    return r;
  }
  return run(schedules, stages, virtual_stages, microbatches, costs, layout);
}

} // namespace troupe::actors
