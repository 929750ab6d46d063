#define BOOST_TEST_MODULE kernels_loss
#define BOOST_TEST_DYN_LINK
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <limits>
#include <stdexcept>

#include "kernels/cpu/loss.hpp"
#include "test_util.hpp"

using namespace troupe::kernels::cpu;
using namespace troupe::kernels::test;

namespace {

struct ref_result {
  double loss = 0;
  std::int64_t correct = 0;
  std::vector<double> grad;
};

// Reference in double: log-sum-exp with the max subtracted, first argmax.
ref_result ref_xent(const std::vector<float>& x, const std::vector<std::int32_t>& labels,
                    std::int64_t rows, std::int64_t classes, double scale) {
  ref_result r;
  r.grad.resize(x.size());
  for (std::int64_t i = 0; i < rows; ++i) {
    double mx = -std::numeric_limits<double>::infinity();
    std::int64_t arg = 0;
    for (std::int64_t c = 0; c < classes; ++c)
      if (x[i * classes + c] > mx)
        mx = x[i * classes + c], arg = c;
    double s = 0;
    for (std::int64_t c = 0; c < classes; ++c)
      s += std::exp(x[i * classes + c] - mx);
    const double lse = mx + std::log(s);
    r.loss += lse - x[i * classes + labels[i]];
    r.correct += arg == labels[i];
    for (std::int64_t c = 0; c < classes; ++c)
      r.grad[i * classes + c] =
          (std::exp(x[i * classes + c] - lse) - (c == labels[i] ? 1.0 : 0.0)) * scale;
  }
  return r;
}

void run_case(std::int64_t rows, std::int64_t classes, float spread) {
  auto x = random_vector(static_cast<std::size_t>(rows * classes), -spread, spread);
  std::vector<std::int32_t> labels(rows);
  for (auto& l : labels)
    l = static_cast<std::int32_t>(random_int(0, classes - 1));
  // Make some rows correct on purpose.
  for (std::int64_t i = 0; i < rows; i += 2)
    x[i * classes + labels[i]] = spread * 2;
  const float scale = 1.f / static_cast<float>(rows * 3);
  auto want = ref_xent(x, labels, rows, classes, scale);
  std::vector<float> d(x.size(), 99.f);
  auto got = softmax_cross_entropy(x.data(), labels.data(), rows, classes, scale, d.data());
  BOOST_TEST(std::abs(got.loss_sum - want.loss) <= 1e-5 * (1 + std::abs(want.loss)));
  BOOST_TEST(got.correct == want.correct);
  BOOST_TEST(std::isfinite(got.loss_sum));
  check_close(d, want.grad, 1e-7, 1e-4, "dlogits");
  auto eval = softmax_cross_entropy(x.data(), labels.data(), rows, classes, scale, nullptr);
  BOOST_TEST(eval.loss_sum == got.loss_sum);
  BOOST_TEST(eval.correct == got.correct);
}

} // namespace

BOOST_AUTO_TEST_CASE(matches_reference_on_odd_shapes) {
  for (std::int64_t rows : {1, 3, 7, 64})
    for (std::int64_t classes : {1, 2, 3, 10, 33, 127})
      run_case(rows, classes, 3.f);
}

BOOST_AUTO_TEST_CASE(stable_for_huge_logits) {
  // exp(1e4) overflows without the max subtraction.
  run_case(5, 10, 1e4f);
  run_case(5, 10, 80.f);
}

BOOST_AUTO_TEST_CASE(bad_labels_throw_and_write_nothing) {
  std::vector<float> x(3 * 4, 0.5f), d(3 * 4, 7.f);
  for (std::int32_t bad : {-1, 4, 1000}) {
    std::vector<std::int32_t> labels = {0, bad, 1};
    BOOST_CHECK_THROW(softmax_cross_entropy(x.data(), labels.data(), 3, 4, 1.f, d.data()),
                      std::invalid_argument);
    for (float v : d)
      BOOST_TEST(v == 7.f);
  }
}

BOOST_AUTO_TEST_CASE(uniform_logits_give_log_classes) {
  std::vector<float> x(2 * 10, 1.5f);
  std::vector<std::int32_t> labels = {3, 9};
  auto r = softmax_cross_entropy(x.data(), labels.data(), 2, 10, 1.f, nullptr);
  BOOST_TEST(std::abs(r.loss_sum - 2 * std::log(10.0)) < 1e-6);
  BOOST_TEST(r.correct == 0); // ties pick the first class
}
