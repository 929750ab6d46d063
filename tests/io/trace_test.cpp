#define BOOST_TEST_DYN_LINK
#define BOOST_TEST_MODULE io_trace
#include <boost/test/unit_test.hpp>

#include <chrono>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>
#include <sched.h>
#include <unistd.h>

#include "runtime/error.hpp"
#include "runtime/telemetry/trace.hpp"
#include "runtime/telemetry/trace_recorder.hpp"
#include "runtime/telemetry/wake_probe.hpp"

using namespace troupe::runtime;
using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

namespace {

trace_event event(std::string name, std::int64_t ts_ns, std::int64_t dur_ns, std::int64_t tid,
                  char phase = 'X') {
  return {std::move(name), "compute", phase, ts_ns, dur_ns, 7, tid, {{"step", std::int64_t{1}}}};
}

/// Parses the writer's output through text, as a viewer would.
nlohmann::json written(std::vector<trace_event> events, const std::vector<trace_track>& tracks) {
  auto text = chrome_trace(std::move(events), tracks, {{"run", "test"}}).dump();
  return nlohmann::json::parse(text);
}

} // namespace

BOOST_AUTO_TEST_CASE(writer_produces_sorted_chrome_json_with_named_tracks) {
  const std::int64_t t0 = 1'700'000'000'000'000'000;
  auto doc = written({event("backward", t0 + 5'000, 1'500, 2), event("step", t0, 9'000, 1),
                      event("forward", t0, 2'000, 1), event("labels", t0 + 3'250, 0, 2, 'i')},
                     {{7, 1, "troupe node a (pid 7)", "stage 0"}, {7, 2, "ignored", "stage 1"}});
  BOOST_TEST(doc.at("displayTimeUnit") == "ms");
  BOOST_TEST(doc.at("metadata").at("run") == "test");
  BOOST_TEST(doc.at("metadata").at("time_origin_unix_ns") == t0);
  const auto& ev = doc.at("traceEvents");
  BOOST_REQUIRE(ev.is_array());
  // Metadata first: one process name per pid, a name and sort index per track.
  std::vector<std::string> meta;
  std::size_t i = 0;
  for (; i < ev.size() && ev[i].at("ph") == "M"; ++i)
    meta.push_back(ev[i].at("name").get<std::string>() + ":" +
                   (ev[i].at("args").contains("name")
                        ? ev[i].at("args").at("name").get<std::string>()
                        : ev[i].at("args").at("sort_index").dump()));
  BOOST_TEST(meta == (std::vector<std::string>{"process_name:troupe node a (pid 7)",
                                               "process_sort_index:0", "thread_name:stage 0",
                                               "thread_sort_index:0", "thread_name:stage 1",
                                               "thread_sort_index:1"}),
             boost::test_tools::per_element());
  // Then the events by time, an enclosing event before the one it contains.
  std::vector<std::string> order;
  double last = -1;
  for (; i < ev.size(); ++i) {
    BOOST_TEST(ev[i].at("ph") != "M");
    BOOST_TEST(ev[i].at("ts").get<double>() >= last);
    last = ev[i].at("ts").get<double>();
    order.push_back(ev[i].at("name"));
  }
  BOOST_TEST(order == (std::vector<std::string>{"step", "forward", "labels", "backward"}),
             boost::test_tools::per_element());
  // Microseconds from the origin, nanoseconds kept as fractions.
  const auto& backward = ev.back();
  BOOST_TEST(backward.at("ts").get<double>() == 5.0);
  BOOST_TEST(backward.at("dur").get<double>() == 1.5);
  BOOST_TEST(backward.at("args").at("step") == 1);
  const auto& labels = ev[ev.size() - 2];
  BOOST_TEST(labels.at("ph") == "i");
  BOOST_TEST(labels.at("s") == "t");
  BOOST_TEST(labels.at("ts").get<double>() == 3.25);
  BOOST_TEST(!labels.contains("dur"));
}

BOOST_AUTO_TEST_CASE(writer_handles_no_events_and_one_name_per_process) {
  auto doc = written({}, {{1, 0, "troupe supervisor (pid 1)", "trainer"},
                          {2, 1, "troupe node b (pid 2)", "stage 0"},
                          {2, 2, "troupe node b (pid 2)", "stage 1"}});
  int process_names = 0;
  for (const auto& e : doc.at("traceEvents"))
    process_names += e.at("name") == "process_name" ? 1 : 0;
  BOOST_TEST(process_names == 2);
  BOOST_TEST(doc.at("metadata").at("time_origin_unix_ns") == 0);
}

BOOST_AUTO_TEST_CASE(shipped_form_round_trips_exactly) {
  trace_event e{
      "wait", "wait", 'X', 1'700'000'000'123'456'789,
      42,     99,     3,   {{"input", std::string{"gradient"}}, {"step", std::int64_t{-4}}}};
  auto back = trace_event_from_json(nlohmann::json::parse(to_json(e).dump()));
  BOOST_TEST((back == e));
  auto list = trace_events_from_json_text(nlohmann::json::array({to_json(e)}).dump());
  BOOST_REQUIRE_EQUAL(list.size(), 1u);
  BOOST_TEST((list[0] == e));
}

BOOST_AUTO_TEST_CASE(malformed_events_are_input_errors) {
  BOOST_CHECK_THROW(trace_events_from_json_text("{}"), input_error);
  BOOST_CHECK_THROW(trace_events_from_json_text("[1"), input_error);
  auto good = to_json(event("forward", 1, 2, 1));
  for (auto [key, value] : std::vector<std::pair<std::string, nlohmann::json>>{
           {"ph", "B"}, {"dur_ns", -1}, {"ts_ns", "soon"}, {"args", {{"x", 1.5}}}}) {
    auto bad = good;
    bad[key] = value;
    BOOST_CHECK_THROW(trace_event_from_json(bad), input_error);
  }
  auto missing = good;
  missing.erase("name");
  BOOST_CHECK_THROW(trace_event_from_json(missing), input_error);
}

BOOST_AUTO_TEST_CASE(disabled_recorder_records_nothing) {
  trace_recorder r;
  BOOST_TEST(!r.enabled());
  auto now = steady::now();
  r.complete("forward", "compute", now, now, {{"step", 1}});
  r.instant("labels", "input", now);
  BOOST_TEST(r.events().empty());
  BOOST_TEST(r.to_json().empty());
}

BOOST_AUTO_TEST_CASE(recorder_stamps_track_clock_and_args) {
  trace_recorder r{3};
  auto begin = steady::now();
  auto end = begin + 1500us;
  r.complete("backward", "compute", begin, end, {{"step", 2}, {"mb", 1}, {"input", "gradient"}});
  r.instant("gradient", "input", end);
  BOOST_REQUIRE_EQUAL(r.events().size(), 2u);
  const auto& e = r.events()[0];
  BOOST_TEST(e.pid == static_cast<std::int64_t>(::getpid()));
  BOOST_TEST(e.tid == 3);
  BOOST_TEST(e.phase == 'X');
  BOOST_TEST(e.dur_ns == 1'500'000);
  BOOST_REQUIRE(e.arg("input") && e.arg("mb") && e.arg("step"));
  BOOST_TEST((*e.arg("input") == trace_value{std::string{"gradient"}}));
  BOOST_TEST((*e.arg("step") == trace_value{std::int64_t{2}}));
  BOOST_TEST(e.args.front().first == "input"); // sorted by key
  BOOST_TEST(!e.arg("chunk"));
  BOOST_TEST(r.events()[1].ts_ns == e.ts_ns + e.dur_ns);
  // The trace clock is Unix time: within a second of system_clock now.
  auto unix_now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
  BOOST_TEST(std::abs(trace_time_ns(steady::now()) - unix_now) < 1'000'000'000);
  // An end before the begin (never from one clock, but be safe) is no negative duration.
  r.complete("odd", "compute", end, begin);
  BOOST_TEST(r.events().back().dur_ns == 0);
}

BOOST_AUTO_TEST_CASE(recorder_keeps_the_first_events_and_counts_the_rest) {
  trace_recorder r{1, 3};
  auto t = steady::now();
  for (int i = 0; i < 10; ++i)
    r.instant("tick", "test", t + std::chrono::microseconds(i), {{"i", i}});
  BOOST_TEST(r.events().size() == 3u);
  BOOST_TEST(r.dropped() == 7u);
  auto shipped = r.to_json();
  BOOST_REQUIRE_EQUAL(shipped.size(), 4u);
  auto marker = trace_event_from_json(shipped.back());
  BOOST_TEST(marker.name == "events dropped");
  BOOST_TEST(marker.ts_ns == trace_time_ns(t + 3us)); // where recording stopped
  BOOST_REQUIRE(marker.arg("dropped"));
  BOOST_TEST((*marker.arg("dropped") == trace_value{std::int64_t{7}}));
}

BOOST_AUTO_TEST_CASE(absorb_moves_another_threads_events_under_the_cap) {
  trace_recorder shard{2, 4}, device{2, 4};
  auto t = steady::now();
  shard.instant("activation", "input", t);
  std::thread worker([&] {
    for (int i = 0; i < 4; ++i)
      device.complete("forward", "compute", t, t + 1ms, {{"mb", i}});
  });
  worker.join(); // the hand-over, as task_done orders it in a shard
  shard.absorb(device);
  BOOST_TEST(device.events().empty());
  BOOST_TEST(shard.events().size() == 4u);
  BOOST_TEST(shard.dropped() == 1u);
  for (const auto& e : shard.events())
    BOOST_TEST(e.tid == 2);
}

// The wake-up probe the benchmarks print (runtime/telemetry/wake_probe.hpp):
// a wake-up costs something and is far below the probe's own pause.
BOOST_AUTO_TEST_CASE(wake_probe_measures_each_core_layout_it_can) {
  BOOST_CHECK_THROW(measure_wake_latency(0), std::invalid_argument);
  const auto w = measure_wake_latency(40);
  BOOST_TEST(w.rounds == 40);
  BOOST_TEST_REQUIRE(w.same_core_us.has_value());
  BOOST_TEST(*w.same_core_us > 0.0);
  BOOST_TEST(*w.same_core_us < 20000.0);
  cpu_set_t set;
  BOOST_TEST_REQUIRE(sched_getaffinity(0, sizeof set, &set) == 0);
  BOOST_TEST(w.other_core_us.has_value() == (CPU_COUNT(&set) > 1));
  if (w.other_core_us)
    BOOST_TEST(*w.other_core_us > 0.0);
  const auto j = to_json(w);
  BOOST_TEST(j.at("rounds").get<int>() == 40);
  BOOST_TEST(j.at("same_core_us").get<double>() == *w.same_core_us);
  BOOST_TEST(to_text(w).find("same core") != std::string::npos);
}
