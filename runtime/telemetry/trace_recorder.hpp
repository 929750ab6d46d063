#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/telemetry/trace.hpp"

namespace troupe::runtime {

/// The events of one track (an actor), recorded from one thread at a time.
/// Default-constructed it is disabled: it records nothing and each recording
/// call costs one branch (its arguments are views and time points). Enabled,
/// it keeps the first `capacity` events and only counts the rest, so a long
/// traced run stays bounded in memory; the shipped form then ends with one
/// "events dropped" instant at the first dropped event.
class trace_recorder {
public:
  using time_point = std::chrono::steady_clock::time_point;

  trace_recorder() = default;
  /// Enabled: events of track `tid` in this process (getpid()).
  explicit trace_recorder(std::int64_t tid, std::size_t capacity = default_trace_capacity);

  bool enabled() const noexcept { return capacity_ > 0; }

  /// A complete event ('X') from `begin` to `end`.
  void complete(std::string_view name, std::string_view category, time_point begin, time_point end,
                std::initializer_list<trace_arg> args = {}) {
    if (enabled())
      record('X', name, category, begin, end, args);
  }
  /// A complete event from `begin` to now (the clock is read only when enabled).
  void complete_until_now(std::string_view name, std::string_view category, time_point begin,
                          std::initializer_list<trace_arg> args = {}) {
    if (enabled())
      record('X', name, category, begin, std::chrono::steady_clock::now(), args);
  }
  /// An instant event ('i') at `at`.
  void instant(std::string_view name, std::string_view category, time_point at,
               std::initializer_list<trace_arg> args = {}) {
    if (enabled())
      record('i', name, category, at, at, args);
  }

  /// Moves the events of `other` (recorded on another thread, e.g. a device
  /// thread, and handed over once that thread is done with it) to the end of
  /// this track, under this track's capacity; `other` is left empty.
  void absorb(trace_recorder& other) {
    if (enabled())
      move_from(other);
  }

  const std::vector<trace_event>& events() const noexcept { return events_; }
  std::uint64_t dropped() const noexcept { return dropped_; }
  std::size_t capacity() const noexcept { return capacity_; }

  /// The shipped form: a JSON array of to_json(trace_event), plus the
  /// "events dropped" instant (args: dropped, capacity) when any were.
  nlohmann::json to_json() const;

private:
  void record(char phase, std::string_view name, std::string_view category, time_point begin,
              time_point end, std::initializer_list<trace_arg> args);
  void keep(trace_event e);
  void move_from(trace_recorder& other);

  std::vector<trace_event> events_;
  std::size_t capacity_ = 0;
  std::uint64_t dropped_ = 0;
  std::int64_t first_dropped_ns_ = 0;
  std::int64_t pid_ = 0;
  std::int64_t tid_ = 0;
};

} // namespace troupe::runtime
