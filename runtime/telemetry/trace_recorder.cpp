#include "runtime/telemetry/trace_recorder.hpp"

#include <algorithm>

#include <unistd.h>

namespace troupe::runtime {

trace_recorder::trace_recorder(std::int64_t tid, std::size_t capacity)
    : capacity_(capacity), pid_(static_cast<std::int64_t>(::getpid())), tid_(tid) {}

void trace_recorder::record(char phase, std::string_view name, std::string_view category,
                            time_point begin, time_point end,
                            std::initializer_list<trace_arg> args) {
  if (events_.size() >= capacity_) {
    if (dropped_++ == 0)
      first_dropped_ns_ = trace_time_ns(begin);
    return;
  }
  trace_event e;
  e.name = name;
  e.category = category;
  e.phase = phase;
  e.ts_ns = trace_time_ns(begin);
  e.dur_ns = std::max<std::int64_t>(
      0, std::chrono::duration_cast<std::chrono::nanoseconds>(end - begin).count());
  e.pid = pid_;
  e.tid = tid_;
  e.args.reserve(args.size());
  for (const auto& a : args) {
    if (const auto* i = std::get_if<std::int64_t>(&a.value))
      e.args.emplace_back(std::string{a.key}, *i);
    else
      e.args.emplace_back(std::string{a.key}, std::string{std::get<std::string_view>(a.value)});
  }
  std::sort(e.args.begin(), e.args.end(),
            [](const auto& x, const auto& y) { return x.first < y.first; });
  events_.push_back(std::move(e));
}

void trace_recorder::keep(trace_event e) {
  if (events_.size() >= capacity_) {
    if (dropped_++ == 0)
      first_dropped_ns_ = e.ts_ns;
    return;
  }
  e.pid = pid_;
  e.tid = tid_;
  events_.push_back(std::move(e));
}

void trace_recorder::move_from(trace_recorder& other) {
  for (auto& e : other.events_)
    keep(std::move(e));
  if (other.dropped_ > 0) {
    if (dropped_ == 0 || other.first_dropped_ns_ < first_dropped_ns_)
      first_dropped_ns_ = other.first_dropped_ns_;
    dropped_ += other.dropped_;
  }
  other.events_.clear();
  other.dropped_ = 0;
}

nlohmann::json trace_recorder::to_json() const {
  auto j = nlohmann::json::array();
  for (const auto& e : events_)
    j.push_back(runtime::to_json(e));
  if (dropped_ > 0) {
    trace_event marker{"events dropped",
                       "trace",
                       'i',
                       first_dropped_ns_,
                       0,
                       pid_,
                       tid_,
                       {{"capacity", static_cast<std::int64_t>(capacity_)},
                        {"dropped", static_cast<std::int64_t>(dropped_)}}};
    j.push_back(runtime::to_json(marker));
  }
  return j;
}

} // namespace troupe::runtime
