#include "actors/schedule.hpp"

#include <algorithm>
#include <stdexcept>

#include "runtime/error.hpp"

namespace troupe::actors {

std::string_view to_string(schedule_kind k) {
  switch (k) {
    case schedule_kind::gpipe: return "gpipe";
    case schedule_kind::one_f_one_b: return "1f1b";
  }
  return "?";
}

schedule_kind parse_schedule_kind(std::string_view s) {
  if (s == "gpipe")
    return schedule_kind::gpipe;
  if (s == "1f1b")
    return schedule_kind::one_f_one_b;
  throw runtime::input_error("unknown schedule '" + std::string{s} + "' (known: gpipe, 1f1b)");
}

std::vector<action> make_schedule(schedule_kind k, int stages, int stage, int microbatches) {
  if (stages < 1 || stage < 0 || stage >= stages || microbatches < 1)
    throw std::invalid_argument("make_schedule: need 0 <= stage < stages and microbatches >= 1");
  std::vector<action> r;
  r.reserve(static_cast<std::size_t>(2 * microbatches));
  auto fwd = [&](int mb) { r.push_back({action::kind::forward, mb}); };
  auto bwd = [&](int mb) { r.push_back({action::kind::backward, mb}); };
  if (k == schedule_kind::gpipe) {
    for (int m = 0; m < microbatches; ++m)
      fwd(m);
    for (int m = microbatches - 1; m >= 0; --m)
      bwd(m);
    return r;
  }
  int warmup = std::min(stages - stage - 1, microbatches);
  int next_f = 0, next_b = 0;
  for (; next_f < warmup; ++next_f)
    fwd(next_f);
  while (next_f < microbatches) {
    fwd(next_f++);
    bwd(next_b++);
  }
  while (next_b < microbatches)
    bwd(next_b++);
  return r;
}

std::vector<action> forward_only_schedule(int microbatches) {
  std::vector<action> r;
  for (int m = 0; m < microbatches; ++m)
    r.push_back({action::kind::forward, m});
  return r;
}

std::string to_string(const std::vector<action>& actions) {
  std::string s;
  for (const auto& a : actions) {
    if (!s.empty())
      s += ' ';
    s += a.what == action::kind::forward ? 'F' : 'B';
    s += std::to_string(a.mb);
  }
  return s;
}

int peak_in_flight(const std::vector<action>& actions) {
  int cur = 0, peak = 0;
  for (const auto& a : actions) {
    cur += a.what == action::kind::forward ? 1 : -1;
    peak = std::max(peak, cur);
  }
  return peak;
}

} // namespace troupe::actors
