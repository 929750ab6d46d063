#include "runtime/telemetry/trace.hpp"

#include <algorithm>
#include <limits>
#include <map>

#include "runtime/error.hpp"

namespace troupe::runtime {

namespace {

using steady = std::chrono::steady_clock;

std::int64_t count_ns(std::chrono::nanoseconds d) {
  return d.count();
}

/// Unix time minus steady time, in ns: a system_clock read bracketed by two
/// steady reads, the tightest bracket of a few. Measured once per process and
/// never changed, so every event of a process shares it.
std::int64_t steady_to_unix_ns() {
  static const std::int64_t offset = [] {
    std::int64_t best_gap = std::numeric_limits<std::int64_t>::max(), best = 0;
    for (int i = 0; i < 8; ++i) {
      auto a = steady::now();
      auto s = std::chrono::system_clock::now();
      auto b = steady::now();
      auto gap = count_ns(b - a);
      if (gap < best_gap) {
        best_gap = gap;
        best = count_ns(s.time_since_epoch()) - (count_ns(a.time_since_epoch()) + gap / 2);
      }
    }
    return best;
  }();
  return offset;
}

nlohmann::json args_json(const std::vector<std::pair<std::string, trace_value>>& args) {
  auto j = nlohmann::json::object();
  for (const auto& [k, v] : args)
    std::visit([&, &k = k](const auto& x) { j[k] = x; }, v);
  return j;
}

void require(bool ok, const std::string& what) {
  if (!ok)
    throw input_error("trace event: " + what);
}

} // namespace

const trace_value* trace_event::arg(std::string_view key) const {
  for (const auto& [k, v] : args)
    if (k == key)
      return &v;
  return nullptr;
}

std::int64_t trace_time_ns(steady::time_point t) {
  return count_ns(t.time_since_epoch()) + steady_to_unix_ns();
}

nlohmann::json to_json(const trace_event& e) {
  return {{"name", e.name},   {"cat", e.category},        {"ph", std::string(1, e.phase)},
          {"ts_ns", e.ts_ns}, {"dur_ns", e.dur_ns},       {"pid", e.pid},
          {"tid", e.tid},     {"args", args_json(e.args)}};
}

trace_event trace_event_from_json(const nlohmann::json& j) {
  try {
    require(j.is_object(), "not an object");
    trace_event e;
    e.name = j.at("name").get<std::string>();
    e.category = j.at("cat").get<std::string>();
    auto ph = j.at("ph").get<std::string>();
    require(ph == "X" || ph == "i", "phase '" + ph + "' is neither X nor i");
    e.phase = ph[0];
    e.ts_ns = j.at("ts_ns").get<std::int64_t>();
    e.dur_ns = j.at("dur_ns").get<std::int64_t>();
    require(e.dur_ns >= 0, "negative duration in '" + e.name + "'");
    e.pid = j.at("pid").get<std::int64_t>();
    e.tid = j.at("tid").get<std::int64_t>();
    const auto& args = j.at("args");
    require(args.is_object(), "args of '" + e.name + "' are not an object");
    for (auto it = args.begin(); it != args.end(); ++it) {
      if (it->is_number_integer())
        e.args.emplace_back(it.key(), it->get<std::int64_t>());
      else if (it->is_string())
        e.args.emplace_back(it.key(), it->get<std::string>());
      else
        require(false, "argument '" + it.key() + "' is neither an integer nor a string");
    }
    return e;
  } catch (const nlohmann::json::exception& ex) {
    throw input_error(std::string{"trace event: "} + ex.what());
  }
}

std::vector<trace_event> trace_events_from_json_text(std::string_view text) {
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_array())
    throw input_error("trace events: not a JSON array");
  std::vector<trace_event> r;
  r.reserve(j.size());
  for (const auto& e : j)
    r.push_back(trace_event_from_json(e));
  return r;
}

nlohmann::json chrome_trace(std::vector<trace_event> events, const std::vector<trace_track>& tracks,
                            nlohmann::json metadata) {
  // Earlier first; at the same time the longer (enclosing) event first, so a
  // viewer nests a step's kernels inside the step.
  std::stable_sort(events.begin(), events.end(), [](const trace_event& a, const trace_event& b) {
    return a.ts_ns != b.ts_ns ? a.ts_ns < b.ts_ns : a.dur_ns > b.dur_ns;
  });
  const std::int64_t origin = events.empty() ? 0 : events.front().ts_ns;
  auto out = nlohmann::json::array();
  auto meta = [&](const char* name, std::int64_t pid, std::int64_t tid, nlohmann::json args) {
    out.push_back({{"name", name},
                   {"ph", "M"},
                   {"ts", 0},
                   {"pid", pid},
                   {"tid", tid},
                   {"args", std::move(args)}});
  };
  std::map<std::int64_t, int> processes;
  for (std::size_t i = 0; i < tracks.size(); ++i) {
    const auto& t = tracks[i];
    if (processes.emplace(t.pid, static_cast<int>(processes.size())).second) {
      meta("process_name", t.pid, 0, {{"name", t.process_name}});
      meta("process_sort_index", t.pid, 0, {{"sort_index", processes.at(t.pid)}});
    }
    meta("thread_name", t.pid, t.tid, {{"name", t.thread_name}});
    meta("thread_sort_index", t.pid, t.tid, {{"sort_index", static_cast<int>(i)}});
  }
  for (const auto& e : events) {
    nlohmann::json j{{"name", e.name},
                     {"cat", e.category},
                     {"ph", std::string(1, e.phase)},
                     {"ts", static_cast<double>(e.ts_ns - origin) / 1e3},
                     {"pid", e.pid},
                     {"tid", e.tid}};
    if (e.phase == 'X')
      j["dur"] = static_cast<double>(e.dur_ns) / 1e3;
    else
      j["s"] = "t";
    if (!e.args.empty())
      j["args"] = args_json(e.args);
    out.push_back(std::move(j));
  }
  if (!metadata.is_object())
    metadata = nlohmann::json::object();
  metadata["time_origin_unix_ns"] = origin;
  metadata["clock"] =
      "steady_clock plus a per-process offset to system_clock; ts and dur in microseconds from "
      "time_origin_unix_ns; processes on different hosts align only as well as their clocks";
  return {{"traceEvents", std::move(out)},
          {"displayTimeUnit", "ms"},
          {"metadata", std::move(metadata)}};
}

} // namespace troupe::runtime
