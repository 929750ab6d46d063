#define BOOST_TEST_DYN_LINK
#define BOOST_TEST_MODULE actors_step_series
#include <boost/test/unit_test.hpp>

#include <cstdint>

#include <nlohmann/json.hpp>

#include "actors/training/progress.hpp"
#include "actors/training/step_series.hpp"

using namespace troupe::actors::training;

namespace {

/// Step i (steps done: i): loss i per prediction (one), accuracy 1 on odd steps, 10 samples
/// in 0.5 s, stage 0 busy 0.25 s and stage 1 0.5 s, lr i / 1000.
step_sample sample(std::int64_t i) {
  return {i, static_cast<double>(i), 1, i % 2, 1, i / 1000.0, 0.5, {0.125, 0.25}};
}

step_series fed(std::int64_t steps, std::size_t max_points) {
  step_series s{max_points};
  for (std::int64_t i = 0; i < steps; ++i) {
    auto x = sample(i);
    x.samples = 10;
    x.correct = 10 * (i % 2);
    s.add(x);
  }
  return s;
}

} // namespace

BOOST_AUTO_TEST_CASE(every_step_is_a_point_up_to_the_bound) {
  auto s = fed(10, 1000);
  BOOST_TEST(s.size() == 10u);
  auto j = s.to_json(true);
  BOOST_TEST(j.at("every").get<int>() == 1);
  BOOST_TEST(j.at("step").size() == 10u);
  BOOST_TEST(j.at("step")[7].get<int>() == 7);
  BOOST_TEST(j.at("loss")[7].get<double>() == 7.0);
  BOOST_TEST(j.at("train_accuracy")[7].get<double>() == 1.0);
  BOOST_TEST(j.at("train_accuracy")[6].get<double>() == 0.0);
  BOOST_TEST(j.at("samples_per_second")[3].get<double>() == 20.0);
  BOOST_TEST(j.at("stage_busy").size() == 2u);
  BOOST_TEST(j.at("stage_busy")[0][4].get<double>() == 0.25);
  BOOST_TEST(j.at("stage_busy")[1][4].get<double>() == 0.5);
  BOOST_TEST(!s.to_json(false).contains("train_accuracy"));
}

BOOST_AUTO_TEST_CASE(a_long_run_is_downsampled_deterministically) {
  // 1000 points full at step 1000 -> 500 of 2 steps; full again at step 2000
  // -> 500 of 4; steps 2000..2499 add 125 more.
  auto s = fed(2500, 1000);
  BOOST_TEST(s.size() == 625u);
  BOOST_TEST(s.every() == 4);
  auto j = s.to_json(true);
  BOOST_TEST(j.at("step").size() == 625u);
  for (std::size_t i = 0; i < 625; i += 97) {
    const auto first = static_cast<std::int64_t>(4 * i);
    // A point is at its last step (steps done at its end).
    BOOST_TEST(j.at("step")[i].get<std::int64_t>() == first + 3);
    // Each point is the mean of its four steps.
    BOOST_TEST(j.at("loss")[i].get<double>() == first + 1.5);
    BOOST_TEST(j.at("train_accuracy")[i].get<double>() == 0.5);
    BOOST_TEST(j.at("samples_per_second")[i].get<double>() == 20.0);
    BOOST_TEST(j.at("stage_busy")[1][i].get<double>() == 0.5);
  }
  BOOST_TEST(j == fed(2500, 1000).to_json(true));
  // Never over the bound, whatever the length.
  for (std::int64_t n : {999, 1000, 1001, 4097})
    BOOST_TEST(fed(n, 1000).size() <= 1000u);
  BOOST_TEST(fed(1001, 1000).size() == 501u);
}

BOOST_AUTO_TEST_CASE(an_odd_bound_keeps_the_partial_point) {
  auto s = fed(8, 3);
  // Steps 0-2: 3 points of 1; step 3 halves them to [0-1], [2] (every 2)
  // and fills [2-3]; 4-5 make a third; step 6 halves to [0-3], [4-5]
  // (every 4) and 6-7 fill the last.
  BOOST_TEST(s.size() == 2u);
  BOOST_TEST(s.every() == 4);
  auto j = s.to_json(false);
  BOOST_TEST(j.at("step")[1].get<int>() == 7);
  BOOST_TEST(j.at("loss")[1].get<double>() == 5.5);
}

// The progress messages to the supervisor (progress.hpp): the run's first
// step, an epoch's or the run's last, and otherwise one per progress_interval.
BOOST_AUTO_TEST_CASE(progress_goes_out_per_interval_and_at_the_last_step) {
  const auto t0 = clock_type::now();
  const auto none = clock_type::time_point{};
  BOOST_TEST(progress_due(none, t0, false)); // the first step
  BOOST_TEST(!progress_due(t0, t0 + progress_interval / 2, false));
  BOOST_TEST(progress_due(t0, t0 + progress_interval / 2, true)); // an epoch's last
  BOOST_TEST(progress_due(t0, t0 + progress_interval, false));
  // 1 ms steps for 1 s: 20 messages, not 1000.
  int sent = 0;
  auto last = none;
  for (int i = 0; i < 1000; ++i) {
    const auto now = t0 + std::chrono::milliseconds(i);
    if (progress_due(last, now, false)) {
      last = now;
      ++sent;
    }
  }
  BOOST_TEST(sent == 20);
}
