// The regression loss (models/train/mse_loss.hpp): its gradient against
// central finite differences (the method and tolerance of gradcheck_test.cpp),
// its values by hand, and its shape checks.

#define BOOST_TEST_DYN_LINK
#define BOOST_TEST_MODULE models_mse_loss
#include <boost/test/unit_test.hpp>

#include <stdexcept>

#include "gradcheck_util.hpp"
#include "models/train/mse_loss.hpp"
#include "test_util.hpp"

using namespace troupe;
using namespace troupe::models;
using namespace troupe::models::test;

BOOST_AUTO_TEST_CASE(mse_gradients_match_finite_differences) {
  for (std::int64_t width : {1, 3}) {
    auto y = random_tensor({4, width}, 21, -2.f, 2.f);
    auto t = random_tensor({4, width}, 22, -2.f, 2.f);
    const float scale = 0.25f;
    auto out = mean_squared_error(y, t, scale, true);
    BOOST_REQUIRE(out.dlogits.defined());
    tensor x = y.clone();
    auto objective = [&] { return mean_squared_error(x, t, scale, false).loss_sum * scale; };
    compare("mse dpredictions", x.mutable_data<float>(), out.dlogits.data<float>(), x.numel(),
            objective);
  }
}

BOOST_AUTO_TEST_CASE(mse_values_by_hand) {
  // Rows: errors (1, -3) and (0, 2): mean squares 5 and 2, mean |e| 2 and 1.
  auto y = tensor::from_vector<float>({2, 2}, {1, -1, 0, 2});
  auto t = tensor::from_vector<float>({2, 2}, {0, 2, 0, 0});
  auto out = mean_squared_error(y, t, 1.f, true);
  BOOST_TEST(out.loss_sum == 7.0);
  BOOST_TEST(out.abs_error_sum == 3.0);
  BOOST_TEST(out.correct == 0);
  // d/dy of mean_k e^2 = 2 e / K
  BOOST_TEST(out.dlogits.data<float>()[1] == -3.f);
  // [B] targets for one output are accepted.
  auto one = mean_squared_error(tensor::from_vector<float>({2, 1}, {1, 2}),
                                tensor::from_vector<float>({2}, {0, 0}), 1.f, false);
  BOOST_TEST(one.loss_sum == 5.0);
}

BOOST_AUTO_TEST_CASE(mse_checks_shapes_and_dtypes) {
  auto y = tensor::from_vector<float>({2, 2}, {1, -1, 0, 2});
  BOOST_CHECK_THROW(mean_squared_error(y, tensor::from_vector<float>({2}, {0, 0}), 1.f, true),
                    std::invalid_argument);
  BOOST_CHECK_THROW(
      mean_squared_error(y, tensor::from_vector<std::int32_t>({2, 2}, {0, 0, 0, 0}), 1.f, true),
      std::invalid_argument);
  BOOST_CHECK_THROW(mean_squared_error(y.reshape({4}), y.reshape({4}), 1.f, true),
                    std::invalid_argument);
}
