#include "actors/plan/time_breakdown.hpp"

#include <algorithm>
#include <cstdio>
#include <stdexcept>

namespace troupe::actors {

double time_breakdown::accounted() const {
  double sum = 0;
  for (const auto& p : parts)
    if (p.seconds)
      sum += *p.seconds;
  return sum;
}

double time_breakdown::percent(double seconds) const {
  return step > 0 ? 100.0 * seconds / step : 0.0;
}

time_breakdown mean_breakdown(const std::vector<time_breakdown>& steps) {
  if (steps.empty())
    return {};
  time_breakdown m;
  m.parts = steps.front().parts;
  for (auto& p : m.parts)
    p.seconds = 0.0;
  const double n = static_cast<double>(steps.size());
  for (const auto& b : steps) {
    if (b.parts.size() != m.parts.size())
      throw std::invalid_argument("mean_breakdown: steps with different parts");
    m.step += b.step / n;
    for (std::size_t i = 0; i < b.parts.size(); ++i) {
      auto& p = m.parts[i];
      if (b.parts[i].key != p.key)
        throw std::invalid_argument("mean_breakdown: part '" + b.parts[i].key + "' next to '" +
                                    p.key + "'");
      if (!b.parts[i].seconds)
        p.seconds.reset();
      else if (p.seconds)
        *p.seconds += *b.parts[i].seconds / n;
    }
  }
  return m;
}

time_breakdown stage_breakdown(const step_timeline& t, std::size_t k) {
  const auto& s = t.stages.at(k);
  const bool trainer = t.trainer_seconds > 0;
  // Without a trainer track the step is the stages' union, and the trainer's
  // hand-offs and wait are not measured (zero here, so they fall in waits).
  const double begin = trainer ? t.trainer_begin : t.begin();
  const double end = trainer ? t.trainer_begin + t.trainer_seconds : t.end();
  const double sent = begin + (trainer ? t.trainer_wait : 0.0); // the step_msgs went out
  const double to_stage = trainer ? std::max(0.0, s.begin - sent) : 0.0;
  // A stage that stamps its span's end late (preempted) may seem to end after
  // the trainer's step: the step ends it.
  const double last = std::min(t.end(), end);
  const double to_trainer = trainer ? std::max(0.0, end - last) : 0.0;
  const double before = std::max(0.0, s.begin - begin) - to_stage; // trainer wait, or not sent yet
  const double drain = std::max(0.0, last - s.end);                // others still at work

  time_breakdown b;
  b.step = end - begin;
  b.parts.push_back({"compute", "compute", s.forward + s.backward + s.weight - s.compute_copies});
  b.parts.push_back({"optimizer", "optimizer", s.optimizer + s.grad_norm - s.optimizer_copies});
  std::optional<double> copies;
  if (s.copies_measured)
    copies = s.compute_copies + s.optimizer_copies;
  b.parts.push_back({"copies", "copies", copies});
  b.parts.push_back({"waits", "waits", before + s.wait + drain});
  b.parts.push_back({"hand-offs", "handoffs", to_stage + s.handoffs + to_trainer});
  if (s.allreduce_end > 0)
    b.parts.push_back({"all-reduce", "allreduce",
                       std::max(0.0, std::min(s.allreduce_end, s.end) - s.last_compute_end)});
  return b;
}

namespace {

std::string format(const char* fmt, double a, double b) {
  char buf[64];
  std::snprintf(buf, sizeof buf, fmt, a, b);
  return buf;
}

} // namespace

std::string to_text(const time_breakdown& b) {
  std::string out;
  for (const auto& p : b.parts) {
    out += p.name + " ";
    out += p.seconds ? format("%.3f ms %.1f%%", 1e3 * *p.seconds, b.percent(*p.seconds))
                     : std::string{"n/a (in other)"};
    out += " | ";
  }
  out += "other " + format("%.3f ms %.1f%%", 1e3 * b.unaccounted(), b.percent(b.unaccounted()));
  return out;
}

nlohmann::json to_json(const time_breakdown& b) {
  nlohmann::json j{{"step_ms", 1e3 * b.step}};
  for (const auto& p : b.parts) {
    j[p.key + "_ms"] = p.seconds ? nlohmann::json(1e3 * *p.seconds) : nlohmann::json();
    j[p.key + "_percent"] = p.seconds ? nlohmann::json(b.percent(*p.seconds)) : nlohmann::json();
  }
  j["other_ms"] = 1e3 * b.unaccounted();
  j["other_percent"] = b.percent(b.unaccounted());
  return j;
}

} // namespace troupe::actors
