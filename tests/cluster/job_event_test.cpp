// The events a --supervisor client is told about its job (job_event.hpp):
// JSON both ways for every kind, unknown kinds refused by name, and the
// plain lines the client prints for them (rebalances included, which the
// multi-process client_test.py does not provoke).

#define BOOST_TEST_MODULE cluster_job_event
#include <boost/test/unit_test.hpp>

#include "actors/cluster/job_event.hpp"
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
