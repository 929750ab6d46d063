#define BOOST_TEST_DYN_LINK
#define BOOST_TEST_MODULE actors_step_timeline
#include <boost/test/unit_test.hpp>

#include <string>

#include <nlohmann/json.hpp>

#include "actors/plan/step_timeline.hpp"
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

BOOST_AUTO_TEST_CASE(a_document_without_stage_tracks_is_refused) {
  BOOST_CHECK_THROW(actors::step_timelines(json{{"traceEvents", json::array()}}),
                    runtime::input_error);
  BOOST_CHECK_THROW(actors::step_timelines(json{{"events", 1}}), runtime::input_error);
}
