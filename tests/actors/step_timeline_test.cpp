#define BOOST_TEST_DYN_LINK
#define BOOST_TEST_MODULE actors_step_timeline
#include <boost/test/unit_test.hpp>

#include <optional>
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

#include "actors/plan/step_timeline.hpp"
#include "actors/plan/time_breakdown.hpp"
#include "runtime/error.hpp"

using namespace troupe;
using nlohmann::json;

namespace {

json track(std::int64_t pid, std::int64_t tid, const std::string& name) {
  return {{"ph", "M"}, {"name", "thread_name"}, {"pid", pid}, {"tid", tid}, {"ts", 0},
          {"args", {{"name", name}}}};
}

/// A complete event; ts and dur in microseconds, as the file has them.
json span(std::int64_t pid, std::int64_t tid, const std::string& name, const std::string& cat,
          double ts, double dur, json args) {
  return {{"ph", "X"}, {"name", name}, {"cat", cat}, {"pid", pid}, {"tid", tid},
          {"ts", ts},  {"dur", dur},   {"args", std::move(args)}};
}

} // namespace

BOOST_AUTO_TEST_CASE(bubble_wait_and_overhead_come_from_the_stage_tracks) {
  // Two stages in two processes (as with --processes); step 0 lasts 100 us
  // (stage 0 from 0 to 90, stage 1 from 10 to 100). Stage 0 computes 60 us
  // (forward 20 + backward 30 + optimizer 10) and waits 25; stage 1 computes
  // 70 (chunk 0 forward 30, backward 40) and waits 15. Bubble: (40 + 30) /
  // (2 x 100).
  json events = json::array({
    track(7, 0, "trainer (pid 7)"),
    track(7, 1, "stage 0 (node a/cpu:0, pid 7)"),
    track(9, 2, "stage 1 (node b/cpu:0, pid 9)"),
    span(7, 0, "step", "step", -5, 110, {{"step", 0}, {"epoch", 0}}),
    span(7, 1, "step", "step", 0, 90, {{"step", 0}, {"microbatches", 2}}),
    span(7, 1, "forward", "compute", 1, 20, {{"step", 0}, {"mb", 0}, {"chunk", 0}}),
    span(7, 1, "wait", "wait", 21, 25, {{"step", 0}, {"mb", 0}, {"input", "gradient"}}),
    span(7, 1, "backward", "compute", 50, 30, {{"step", 0}, {"mb", 0}, {"chunk", 0}}),
    span(7, 1, "optimizer", "compute", 80, 10, {{"step", 0}}),
    span(9, 2, "step", "step", 10, 90, {{"step", 0}, {"microbatches", 2}}),
    span(9, 2, "wait", "wait", 10, 15, {{"step", 0}, {"mb", 0}, {"input", "activation"}}),
    span(9, 2, "forward", "compute", 26, 30, {{"step", 0}, {"mb", 0}, {"chunk", 0}}),
    span(9, 2, "backward", "compute", 56, 40, {{"step", 0}, {"mb", 0}, {"chunk", 0}}),
    // Evaluation (negative ids) and a step only one stage has are left out.
    span(9, 2, "step", "eval", 200, 10, {{"step", -1}, {"microbatches", 2}}),
    span(9, 2, "step", "step", 300, 10, {{"step", 1}, {"microbatches", 2}}),
  });
  auto steps = actors::step_timelines(json{{"traceEvents", events}});
  BOOST_TEST_REQUIRE(steps.size() == 1u);
  const auto& t = steps[0];
  const auto tol = boost::test_tools::tolerance(1e-9);
  BOOST_TEST(t.step == 0);
  BOOST_TEST(t.microbatches == 2);
  BOOST_TEST(t.seconds() == 100e-6, tol);
  BOOST_TEST(t.trainer_seconds == 110e-6, tol);
  BOOST_TEST_REQUIRE(t.stages.size() == 2u);
  BOOST_TEST(t.stages[0].busy() == 60e-6, tol);
  BOOST_TEST(t.stages[0].wait == 25e-6, tol);
  BOOST_TEST(t.stages[0].overhead() == 5e-6, tol); // 90 - 60 - 25
  BOOST_TEST(t.stages[1].overhead() == 5e-6, tol); // 90 - 70 - 15
  BOOST_TEST(t.stages[1].forward_by_chunk.at(0) == 30e-6, tol);
  BOOST_TEST(t.stages[1].backward_by_chunk.at(0) == 40e-6, tol);
  BOOST_TEST(t.bubble() == 70.0 / 200.0, tol);
}

BOOST_AUTO_TEST_CASE(data_parallel_replica_tracks_are_stages_of_their_own) {
  // `--dp 2`: the tracks are "replica R stage 0", listed replica 1 first; a
  // tensor-parallel rank's track ("stage 0 tp rank 1") is not a stage.
  json events = json::array({
    track(7, 0, "trainer (pid 7)"),
    track(7, 2, "replica 1 stage 0 (node a/cpu:1, pid 7)"),
    track(7, 1, "replica 0 stage 0 (node a/cpu:0, pid 7)"),
    track(7, 3, "replica 0 stage 0 tp rank 1 (node a/cpu:2, pid 7)"),
    track(7, 4, "replica x stage 0 (node a/cpu:2, pid 7)"),
    span(7, 0, "step", "step", 0, 100, {{"step", 3}}),
    span(7, 1, "step", "step", 5, 90, {{"step", 3}, {"microbatches", 1}}),
    span(7, 1, "backward", "compute", 10, 40, {{"step", 3}, {"chunk", 0}}),
    span(7, 1, "allreduce", "comm", 50, 20, {{"step", 3}, {"bucket", 0}}),
    span(7, 2, "step", "step", 10, 85, {{"step", 3}, {"microbatches", 1}}),
    span(7, 2, "backward", "compute", 10, 30, {{"step", 3}, {"chunk", 0}}),
  });
  auto steps = actors::step_timelines(json{{"traceEvents", events}});
  BOOST_TEST_REQUIRE(steps.size() == 1u);
  const auto& t = steps[0];
  const auto tol = boost::test_tools::tolerance(1e-9);
  BOOST_TEST_REQUIRE(t.stages.size() == 2u);
  BOOST_TEST(t.stages[0].replica == 0);
  BOOST_TEST(t.stages[1].replica == 1);
  BOOST_TEST(t.stages[0].index == 0);
  BOOST_TEST(t.stages[1].index == 0);
  BOOST_TEST(t.stages[0].backward == 40e-6, tol);
  BOOST_TEST(t.stages[0].allreduce_end == 70e-6, tol);
  BOOST_TEST(t.stages[1].backward == 30e-6, tol);
  BOOST_TEST(t.trainer_seconds == 100e-6, tol);
  // Each replica's breakdown is against the trainer's step.
  auto b = actors::stage_breakdown(t, 1);
  BOOST_TEST(b.step == 100e-6, tol);
}

BOOST_AUTO_TEST_CASE(a_document_without_stage_tracks_is_refused) {
  BOOST_CHECK_THROW(actors::step_timelines(json{{"traceEvents", json::array()}}),
                    runtime::input_error);
  BOOST_CHECK_THROW(actors::step_timelines(json{{"events", 1}}), runtime::input_error);
}

namespace {

/// Two stages, a 200 us trainer step (its batch wait 0..20, so the step_msgs
/// go out at 20) and the events of the test below; stage 1's compute events
/// carry no copy_ns (copies not measured there).
json breakdown_trace() {
  return json{
      {"traceEvents",
       json::array({
           track(7, 0, "trainer (pid 7)"),
           track(7, 1, "stage 0 (node a/cpu:0, pid 7)"),
           track(7, 2, "stage 1 (node a/cpu:1, pid 7)"),
           span(7, 0, "step", "step", 0, 200, {{"step", 0}, {"epoch", 0}}),
           span(7, 0, "wait batch", "wait", 0, 20, {{"step", 0}}),
           span(7, 1, "step", "step", 25, 145, {{"step", 0}, {"microbatches", 1}}),
           span(7, 1, "device task", "handoff", 30, 5, {{"step", 0}}),
           span(7, 1, "forward", "compute", 35, 40,
                {{"step", 0}, {"mb", 0}, {"chunk", 0}, {"copy_ns", 4000}}),
           span(7, 1, "wait", "wait", 75, 25, {{"step", 0}, {"mb", 0}}),
           span(7, 1, "device task", "handoff", 100, 4, {{"step", 0}}),
           span(7, 1, "backward", "compute", 104, 40,
                {{"step", 0}, {"mb", 0}, {"chunk", 0}, {"copy_ns", 0}}),
           span(7, 1, "optimizer", "compute", 144, 16, {{"step", 0}, {"copy_ns", 2000}}),
           span(7, 1, "task done", "handoff", 160, 3, {{"step", 0}}),
           span(7, 2, "step", "step", 30, 160, {{"step", 0}, {"microbatches", 1}}),
           span(7, 2, "wait", "wait", 30, 50, {{"step", 0}, {"mb", 0}}),
           span(7, 2, "forward", "compute", 80, 30, {{"step", 0}, {"mb", 0}, {"chunk", 0}}),
           span(7, 2, "backward", "compute", 110, 40, {{"step", 0}, {"mb", 0}, {"chunk", 0}}),
           span(7, 2, "optimizer", "compute", 150, 10, {{"step", 0}}),
       })}};
}

double part(const actors::time_breakdown& b, const std::string& key) {
  for (const auto& p : b.parts)
    if (p.key == key)
      return p.seconds.value();
  throw std::runtime_error("no part " + key);
}

} // namespace

BOOST_AUTO_TEST_CASE(a_stage_breakdown_sums_to_the_trainer_step) {
  auto steps = actors::step_timelines(breakdown_trace());
  BOOST_TEST_REQUIRE(steps.size() == 1u);
  const auto tol = boost::test_tools::tolerance(1e-9);
  // Stage 0: compute 40 + 40 - 4 us of copies; optimizer 16 - 2; waits: the
  // trainer's 20, its own 25 and 20 after its report (stage 1 runs to 190);
  // hand-offs: step_msg 20 -> 25, device 5 + 4 + 3, last report 190 -> 200.
  auto b = actors::stage_breakdown(steps[0], 0);
  BOOST_TEST(b.step == 200e-6, tol);
  BOOST_TEST(part(b, "compute") == 76e-6, tol);
  BOOST_TEST(part(b, "optimizer") == 14e-6, tol);
  BOOST_TEST(part(b, "copies") == 6e-6, tol);
  BOOST_TEST(part(b, "waits") == 65e-6, tol);
  BOOST_TEST(part(b, "handoffs") == 27e-6, tol);
  BOOST_TEST(b.unaccounted() == 12e-6, tol); // its span 145 less 133 in events
  BOOST_TEST(b.accounted() + b.unaccounted() == b.step, tol);
  BOOST_TEST(b.parts.size() == 5u); // no all-reduce without data parallelism
}

BOOST_AUTO_TEST_CASE(a_category_the_trace_lacks_is_unaccounted_not_dropped) {
  auto steps = actors::step_timelines(breakdown_trace());
  BOOST_TEST_REQUIRE(steps.size() == 1u);
  const auto tol = boost::test_tools::tolerance(1e-9);
  // Stage 1 has no copy_ns: copies are n/a, and the 30 us its span holds
  // outside its events (copies among them, had there been any) are "other".
  auto b = actors::stage_breakdown(steps[0], 1);
  BOOST_TEST_REQUIRE(b.parts.at(2).key == "copies");
  BOOST_TEST(!b.parts.at(2).seconds.has_value());
  BOOST_TEST(part(b, "compute") == 70e-6, tol);
  BOOST_TEST(part(b, "waits") == 70e-6, tol);    // 20 + 50 + 0
  BOOST_TEST(part(b, "handoffs") == 20e-6, tol); // 20 -> 30, 190 -> 200
  BOOST_TEST(b.unaccounted() == 30e-6, tol);
  BOOST_TEST(b.accounted() + b.unaccounted() == b.step, tol);
  auto text = actors::to_text(b);
  BOOST_TEST(text.find("copies n/a") != std::string::npos, text);
  BOOST_TEST(text.find("other 0.030 ms 15.0%") != std::string::npos, text);
  auto j = actors::to_json(b);
  BOOST_TEST(j.at("copies_ms").is_null());
  BOOST_TEST(j.at("other_ms").get<double>() == 0.030, tol);
  double sum = j.at("other_ms").get<double>();
  for (const auto* key : {"compute_ms", "optimizer_ms", "waits_ms", "handoffs_ms"})
    sum += j.at(key).get<double>();
  BOOST_TEST(sum == j.at("step_ms").get<double>(), tol);
}

BOOST_AUTO_TEST_CASE(the_mean_of_breakdowns_keeps_a_part_measured_only_where_every_step_has_it) {
  const auto tol = boost::test_tools::tolerance(1e-12);
  actors::time_breakdown a{10, {{"compute", "compute", 6.0}, {"copies", "copies", 1.0}}};
  actors::time_breakdown b{20, {{"compute", "compute", 8.0}, {"copies", "copies", std::nullopt}}};
  auto m = actors::mean_breakdown({a, b});
  BOOST_TEST(m.step == 15.0, tol);
  BOOST_TEST(m.parts.at(0).seconds.value() == 7.0, tol);
  BOOST_TEST(!m.parts.at(1).seconds.has_value());
  BOOST_TEST(m.unaccounted() == 8.0, tol);
  actors::time_breakdown c{10, {{"compute", "compute", 6.0}}};
  BOOST_CHECK_THROW(actors::mean_breakdown({a, c}), std::invalid_argument);
}
