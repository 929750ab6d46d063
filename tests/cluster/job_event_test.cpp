// The events a --supervisor client is told about its job (job_event.hpp):
// JSON both ways for every kind, unknown kinds refused by name, and the
// plain lines the client prints for them (rebalances included, which the
// multi-process client_test.py does not provoke); and the stages' busy
// fractions the supervisor derives from the trainer's progress (/status).

#define BOOST_TEST_MODULE cluster_job_event
#include <boost/test/unit_test.hpp>

#include "actors/cluster/job_event.hpp"
#include "actors/cluster/supervisor_status.hpp"
#include "runtime/error.hpp"

namespace a = troupe::actors;

namespace {

a::job_event make(a::job_event_kind k, nlohmann::json fields) {
  return a::job_event{k, 4, 1.5e9, std::move(fields)};
}

} // namespace

BOOST_AUTO_TEST_CASE(every_kind_round_trips) {
  using k = a::job_event_kind;
  for (auto kind : {k::waiting, k::plan, k::progress, k::epoch, k::restart, k::recovered,
                    k::rebalance, k::summary}) {
    auto e = make(kind, {{"step", 7}});
    auto j = a::to_json(e);
    BOOST_TEST(j.at("event").get<std::string>() == a::to_string(kind));
    BOOST_TEST(j.at("step").get<int>() == 7); // fields are flattened
    auto back = a::job_event_from_json(nlohmann::json::parse(j.dump()));
    BOOST_TEST((back.kind == kind));
    BOOST_TEST(back.job == 4u);
    BOOST_TEST(back.time == 1.5e9);
    BOOST_TEST(back.fields == e.fields);
  }
}

BOOST_AUTO_TEST_CASE(unknown_kinds_are_refused) {
  BOOST_CHECK_EXCEPTION(
      a::job_event_from_json({{"event", "explode"}}), troupe::runtime::input_error,
      [](const auto& e) { return std::string{e.what()}.find("'explode'") != std::string::npos; });
  BOOST_CHECK_THROW(a::job_event_from_json({{"job", 1}}), troupe::runtime::input_error);
}

BOOST_AUTO_TEST_CASE(plain_lines) {
  using k = a::job_event_kind;
  BOOST_TEST(a::describe(make(k::waiting, {{"ready", 1}, {"expected", 2}})) ==
             "job 4 waits for 2 node(s) (1 ready)");
  BOOST_TEST(
      a::describe(make(k::rebalance, {{"step", 30}, {"kind", "shares"}, {"why", "b is slow"}})) ==
      "job 4: rebalanced at step 30 (shares): b is slow");
  BOOST_TEST(
      a::describe(make(
          k::restart,
          {{"generation", 1}, {"what", "node b lost"}, {"restart", 1}, {"max_restarts", 3}})) ==
      "job 4 generation 1 failed: node b lost; recovering (restart 1 of at most 3)");
  BOOST_TEST(a::describe(make(k::recovered, {{"generation", 2},
                                             {"stages", 2},
                                             {"replicas", 1},
                                             {"tp", 1},
                                             {"source", "snapshot"},
                                             {"step", 12}})) ==
             "job 4: generation 2 on 2 stage(s) x 1 replica(s) x tp 1, from snapshot (step 12)");
  BOOST_TEST(
      a::describe(make(
          k::epoch,
          {{"epoch", 1}, {"train_loss", 0.25}, {"test_accuracy", 0.9561}, {"test_loss", 0.2}})) ==
      "epoch 1: train loss 0.2500, test accuracy 95.61%");
  BOOST_TEST(a::describe(make(k::epoch, {{"epoch", 2},
                                         {"train_loss", 1.5},
                                         {"test_accuracy", nullptr},
                                         {"test_loss", 1.25},
                                         {"bits_per_char", 1.803}})) ==
             "epoch 2: train loss 1.5000, held-out loss 1.2500 (1.803 bits/char)");
  BOOST_TEST(a::describe(make(k::progress, {{"step", 12},
                                            {"total_steps", 60},
                                            {"percent", 20.0},
                                            {"epoch", 1},
                                            {"epochs", 1},
                                            {"samples_per_second", 6650.4},
                                            {"loss", 0.45}})) ==
             "step 12/60, 20% of epoch 1/1, 6650 samples/s, loss 0.4500");
}

// Progress comes every few steps: a stage's busy fraction is its compute
// time over the steps' time since the previous message, both summed.
BOOST_AUTO_TEST_CASE(busy_fractions_span_the_steps_since_the_last_progress) {
  auto stage = [](int s, double compute) {
    return nlohmann::json{
        {"stage", s}, {"replica", 0}, {"tp_rank", 0}, {"compute_seconds", compute}};
  };
  const nlohmann::json before{{"train_seconds", 2.0}, {"stages", {stage(0, 1.5), stage(1, 0.5)}}};
  // Four steps of 0.1 s since: stage 0 computed 0.3 s of them, stage 1 0.1 s.
  nlohmann::json after{
      {"step_seconds", 0.1}, {"train_seconds", 2.4}, {"stages", {stage(0, 1.8), stage(1, 0.6)}}};
  a::add_busy_fractions(before, after);
  BOOST_TEST(after["stages"][0].value("busy_fraction", -1.0) == 0.75,
             boost::test_tools::tolerance(1e-9));
  BOOST_TEST(after["stages"][1].value("busy_fraction", -1.0) == 0.25,
             boost::test_tools::tolerance(1e-9));
  // The first progress (nothing before) and a new generation (counters
  // restarted) give none.
  nlohmann::json first = after;
  first["stages"][0].erase("busy_fraction");
  a::add_busy_fractions(nlohmann::json{}, first);
  BOOST_TEST(!first["stages"][0].contains("busy_fraction"));
  nlohmann::json restarted{{"train_seconds", 0.1}, {"stages", {stage(0, 0.05)}}};
  a::add_busy_fractions(after, restarted);
  BOOST_TEST(!restarted["stages"][0].contains("busy_fraction"));
}
