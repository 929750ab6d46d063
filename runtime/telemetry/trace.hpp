#pragma once

// Timelines of a run as Chrome trace-event JSON (the format Perfetto and
// chrome://tracing open): value-type events, the clock they are stamped on,
// the form actors ship them in, and the writer. Recording is
// runtime/telemetry/trace_recorder.hpp.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

namespace troupe::runtime {

/// How many events one recorder (one track) keeps before it only counts them:
/// tracing every step of a long run must not grow memory without bound.
inline constexpr std::size_t default_trace_capacity = 200'000;

/// An argument's value: a small integer or a short string.
using trace_value = std::variant<std::int64_t, std::string>;

/// One event of a track. Times are nanoseconds since the Unix epoch on the
/// trace clock (trace_time_ns), so events of several processes compare.
struct trace_event {
  std::string name;
  std::string category;
  char phase = 'X'; ///< 'X' complete (ts, dur) or 'i' instant
  std::int64_t ts_ns = 0;
  std::int64_t dur_ns = 0; ///< 'X' only
  std::int64_t pid = 0;    ///< OS process id of the recording process
  std::int64_t tid = 0;    ///< track within that process
  /// Sorted by key, as a JSON object keeps them, so the shipped form round-trips.
  std::vector<std::pair<std::string, trace_value>> args;

  /// The argument `key`, or null.
  const trace_value* arg(std::string_view key) const;
  friend bool operator==(const trace_event&, const trace_event&) = default;
};

/// A recording call's argument: views only, so a disabled recorder's caller
/// allocates nothing.
struct trace_arg {
  std::string_view key;
  std::variant<std::int64_t, std::string_view> value;
};

/// Nanoseconds since the Unix epoch of a steady_clock time point: steady_clock
/// plus this process's offset to system_clock, measured once. Durations stay
/// monotonic (an NTP step during a run cannot make one negative), and traces
/// of processes on one host line up to a few microseconds. Processes on
/// several hosts line up only as well as the hosts' system clocks agree (NTP:
/// about a millisecond; PTP: microseconds): compare durations within a
/// process freely, but not a send on one host with the arrival on another.
std::int64_t trace_time_ns(std::chrono::steady_clock::time_point t);

/// The form actors ship events in (exact nanoseconds, unlike the output):
/// {"name", "cat", "ph", "ts_ns", "dur_ns", "pid", "tid", "args"}.
nlohmann::json to_json(const trace_event& e);
/// Throws input_error for a malformed event.
trace_event trace_event_from_json(const nlohmann::json& j);
/// Parses a JSON array of events in the shipped form (input_error if malformed).
std::vector<trace_event> trace_events_from_json_text(std::string_view text);

/// A named track of the output: a thread `tid` of process `pid`.
struct trace_track {
  std::int64_t pid = 0;
  std::int64_t tid = 0;
  std::string process_name; ///< the first track of a pid names the process
  std::string thread_name;
};

/// The Chrome trace-event document: {"traceEvents": [...], "displayTimeUnit":
/// "ms", "metadata": {...}}. Metadata events ('M': process_name, thread_name,
/// and sort indices in the order of `tracks`) come first, then the events
/// sorted by time (an enclosing event before those it contains). ts and dur
/// are microseconds (fractions keep nanoseconds) from the earliest event, whose
/// Unix time is metadata.time_origin_unix_ns; instants are thread-scoped.
nlohmann::json chrome_trace(std::vector<trace_event> events, const std::vector<trace_track>& tracks,
                            nlohmann::json metadata = nlohmann::json::object());

} // namespace troupe::runtime
