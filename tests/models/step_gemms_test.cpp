#define BOOST_TEST_DYN_LINK
#define BOOST_TEST_MODULE models_step_gemms
#include <boost/test/unit_test.hpp>

#include <stdexcept>

#include "models/layers/model_spec.hpp"
#include "models/step_gemms.hpp"
#include "models/zoo.hpp"

using namespace troupe;

BOOST_AUTO_TEST_CASE(a_dense_mlp_counts_forward_and_both_gradients_by_hand) {
  // 4 -> 3 -> 2 at batch 5: forward 2*5*(4*3 + 3*2) = 180, weight gradients
  // the same 180, input gradient of the second layer only 2*5*3*2 = 60.
  auto spec = models::model_builder("tiny").input({4}).dense(4, 3).relu().dense(3, 2).build();
  auto g = models::training_gemms(spec, 5);
  BOOST_TEST(g.flops() == 420.0);
  BOOST_TEST(g.calls.size() == 5u);
  BOOST_TEST(g.uncounted.empty());
  // Two micro-batches: twice the work; the second sums into the weight gradients.
  auto two = models::training_gemms(spec, 5, 2);
  BOOST_TEST(two.flops() == 840.0);
  BOOST_TEST(!two.calls.at(1).accumulate);
  BOOST_TEST(two.calls.at(6).accumulate);
  // The zoo MLP (784 -> 1024 -> 512 -> 10) at batch 64: 2*64*(802816 +
  // 524288 + 5120) twice, plus 2*64*(524288 + 5120).
  auto zoo = models::training_gemms(models::zoo_model("mlp"), 64);
  BOOST_TEST(zoo.flops() == 408813568.0);
  const auto& first = zoo.calls.front(); // y = x W^T: rows x out x in
  BOOST_TEST(first.m == 64);
  BOOST_TEST(first.n == 1024);
  BOOST_TEST(first.k == 784);
  BOOST_TEST(first.trans_b);
}

BOOST_AUTO_TEST_CASE(layers_whose_gemms_are_not_counted_are_named) {
  auto g = models::training_gemms(models::zoo_model("cnn"), 2);
  BOOST_TEST_REQUIRE(g.uncounted.size() == 1u);
  BOOST_TEST(g.uncounted.front() == "conv2d layer 0");
  BOOST_TEST(g.flops() > 0.0); // its dense layers still are
  BOOST_CHECK_THROW(models::training_gemms(models::zoo_model("mlp"), 0), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(every_call_is_timed) {
  auto spec = models::model_builder("tiny").input({4}).dense(4, 3).relu().dense(3, 2).build();
  auto g = models::training_gemms(spec, 5);
  auto t = models::time_gemms(g.calls, 3);
  BOOST_TEST_REQUIRE(t.size() == g.calls.size());
  for (double s : t)
    BOOST_TEST(s > 0.0);
}
