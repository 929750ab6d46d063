// Central finite-difference gradient checks of every layer (w.r.t. the input
// and every parameter) and of the softmax cross-entropy loss.
//
// The layers compute in float32. The scalar objective is f = sum(r * y) with a
// fixed random r, accumulated in double, so the only noise is float rounding
// inside forward: about 1e-7 relative per output, i.e. ~1e-6 absolute on f for
// these small layers. A central difference with eps = 1e-2 turns that into
// ~1e-4 absolute noise on the numerical derivative, and its truncation error
// (eps^2 / 6 * f''') is ~1e-5 for the smooth layers (zero for the ones linear
// in the perturbed value). So we demand
//   |numeric - analytic| / max(|numeric|, |analytic|, 5e-2) < 1e-2,
// i.e. 1% relative error, with an absolute floor of 5e-4 for near-zero
// derivatives where the relative error is meaningless. A wrong formula (a
// missing term, a transposed index, a dropped scale) is off by far more; the
// largest error measured on the current kernels is ~2e-4.
// Non-smooth layers (ReLU, max pooling) get inputs kept at least 2 * eps away
// from their kinks, so the finite difference never crosses one.

#define BOOST_TEST_DYN_LINK
#define BOOST_TEST_MODULE models_gradcheck
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>

#include "models/layers/conv2d.hpp"
#include "models/layers/dense.hpp"
#include "models/layers/dropout.hpp"
#include "models/layers/embedding.hpp"
#include "models/layers/flatten.hpp"
#include "models/layers/gelu.hpp"
#include "models/layers/layer_norm.hpp"
#include "models/train/loss.hpp"
#include "models/layers/maxpool2d.hpp"
#include "models/layers/relu.hpp"
#include "gradcheck_util.hpp"
#include "test_util.hpp"

using namespace troupe;
using namespace troupe::models;
using namespace troupe::models::test;

namespace {

/// Values spread so that no two are within 2 * fd_eps of each other (and none
/// within 2 * fd_eps of zero): finite differences never cross a ReLU kink or
/// change a max-pooling argmax.
tensor spread_tensor(shape_t shape, std::uint64_t key) {
  tensor t = tensor::empty(runtime::dtype::f32, std::move(shape));
  std::vector<std::int64_t> order(static_cast<std::size_t>(t.numel()));
  std::iota(order.begin(), order.end(), 0);
  runtime::rng_stream rng(5, key);
  for (std::size_t i = order.size(); i > 1; --i)
    std::swap(order[i - 1], order[rng.next_below(i)]);
  float* p = t.mutable_data<float>();
  const auto half = static_cast<std::int64_t>(order.size() / 2);
  for (std::size_t i = 0; i < order.size(); ++i) {
    auto k = order[i] - half; // ..., -1, 0, 1, ...
    p[i] = static_cast<float>(0.05 * static_cast<double>(k) + (k >= 0 ? 0.025 : -0.025));
  }
  return t;
}

forward_context train_ctx() {
  forward_context c;
  c.mb = 3;
  c.step = 11;
  c.sample_offset = 5;
  c.training = true;
  c.seed = 42;
  return c;
}

} // namespace

BOOST_AUTO_TEST_CASE(dense_gradients) {
  dense l(4, 5, 4);
  l.init(1);
  check_layer(l, random_tensor({3, 5}, 1), train_ctx());
  // Rank-3 input: applied over the last dimension, like torch.nn.Linear.
  check_layer(l, random_tensor({2, 3, 5}, 2), train_ctx());
}

BOOST_AUTO_TEST_CASE(dense_skips_input_grad_but_not_parameter_grads) {
  dense a(0, 6, 3), b(0, 6, 3);
  a.init(9);
  b.init(9);
  auto x = random_tensor({4, 6}, 3);
  auto r = random_tensor({4, 3}, 4);
  a.forward(x, train_ctx());
  b.forward(x, train_ctx());
  BOOST_TEST(a.backward(r, 3, true).defined());
  BOOST_TEST(!b.backward(r, 3, false).defined());
  for (std::size_t i = 0; i < 2; ++i)
    BOOST_TEST(runtime::bitwise_equal(a.parameters()[i].grad, b.parameters()[i].grad));
}

BOOST_AUTO_TEST_CASE(fresh_gradient_overwrites_garbage) {
  // grad_fresh means "overwrite" (GEMM beta = 0): stale NaNs must not leak in.
  dense l(0, 4, 2);
  l.init(3);
  for (auto& p : l.parameters()) {
    p.grad = tensor::empty(runtime::dtype::f32, p.value.shape());
    std::fill_n(p.grad.mutable_data<float>(), p.grad.numel(), std::nanf(""));
    p.grad_fresh = true;
  }
  l.forward(random_tensor({3, 4}, 5), train_ctx());
  l.backward(random_tensor({3, 2}, 6), 3, false);
  for (auto& p : l.parameters())
    for (float v : p.grad.values<float>())
      BOOST_TEST(std::isfinite(v));
}

BOOST_AUTO_TEST_CASE(relu_gradients) {
  relu l(1);
  check_layer(l, spread_tensor({3, 7}, 1), train_ctx());
}

BOOST_AUTO_TEST_CASE(gelu_gradients) {
  gelu l(1);
  check_layer(l, random_tensor({3, 8}, 7, -3.f, 3.f), train_ctx());
}

BOOST_AUTO_TEST_CASE(conv2d_stride2_padding1_gradients) {
  conv2d l(0, 3, 4, 3, 2, 1);
  l.init(5);
  BOOST_TEST(l.output_shape({3, 7, 7}) == (shape_t{4, 4, 4}));
  check_layer(l, random_tensor({2, 3, 7, 7}, 8), train_ctx());
}

BOOST_AUTO_TEST_CASE(conv2d_stride1_nonsquare_gradients) {
  conv2d l(2, 2, 3, 2);
  l.init(6);
  check_layer(l, random_tensor({2, 2, 5, 4}, 9), train_ctx());
}

BOOST_AUTO_TEST_CASE(maxpool2d_gradients) {
  maxpool2d a(1, 2); // floor mode: the last row and column of 5x5 get no gradient
  check_layer(a, spread_tensor({2, 3, 5, 5}, 2), train_ctx());
  maxpool2d b(1, 3, 2); // overlapping windows
  check_layer(b, spread_tensor({2, 2, 7, 7}, 3), train_ctx());
}

BOOST_AUTO_TEST_CASE(flatten_gradients) {
  flatten l(3);
  BOOST_TEST(l.output_shape({2, 3, 4}) == (shape_t{24}));
  auto x = random_tensor({2, 2, 3, 4}, 10);
  auto y = l.forward(x, train_ctx());
  BOOST_TEST(y.shape() == (shape_t{2, 24}));
  BOOST_TEST(y.shares_storage_with(x)); // a view, no copy
  l.clear_saved();
  check_layer(l, x, train_ctx(), false);
}

BOOST_AUTO_TEST_CASE(dropout_gradients_with_fixed_mask) {
  dropout l(6, 0.3);
  // The same ctx (seed, step, sample offset, layer index) gives the same mask,
  // so the layer is a fixed linear map for the finite differences.
  check_layer(l, random_tensor({4, 10}, 11), train_ctx());
}

BOOST_AUTO_TEST_CASE(dropout_mask_independent_of_split) {
  dropout l(2, 0.5);
  auto x = random_tensor({8, 16}, 12);
  auto ctx = train_ctx();
  ctx.sample_offset = 0;
  auto full = l.forward(x, ctx);
  auto c2 = ctx;
  c2.mb = 9;
  c2.sample_offset = 4;
  auto part = l.forward(rows(x, 4, 8), c2);
  BOOST_TEST(runtime::bitwise_equal(rows(full, 4, 8), part));
  // Roughly half dropped, and the kept ones scaled by 2.
  std::int64_t zeros = 0;
  auto xv = x.values<float>();
  auto yv = full.values<float>();
  for (std::size_t i = 0; i < yv.size(); ++i) {
    if (yv[i] == 0.f)
      ++zeros;
    else
      BOOST_TEST(yv[i] == 2.f * xv[i]);
  }
  BOOST_TEST(zeros > 40);
  BOOST_TEST(zeros < 88);
  // Another step or another layer index draws another mask.
  auto c3 = ctx;
  c3.step += 1;
  BOOST_TEST(!runtime::bitwise_equal(l.forward(x, c3), full));
  dropout other(3, 0.5);
  BOOST_TEST(!runtime::bitwise_equal(other.forward(x, ctx), full));
  // Evaluation is the identity.
  auto ev = ctx;
  ev.training = false;
  BOOST_TEST(runtime::bitwise_equal(l.forward(x, ev), x));
  l.clear_saved();
  other.clear_saved();
  BOOST_TEST(l.saved_bytes() == 0u);
}

BOOST_AUTO_TEST_CASE(layer_norm_gradients) {
  layer_norm l(2, 8);
  // Non-trivial affine parameters so their gradients are exercised in general.
  for (auto& p : l.parameters()) {
    auto v = random_tensor(p.value.shape(), p.name.size() + 20, 0.5f, 1.5f);
    p.value = v;
  }
  check_layer(l, random_tensor({3, 8}, 13, -2.f, 2.f), train_ctx());
  check_layer(l, random_tensor({2, 2, 8}, 14, -2.f, 2.f), train_ctx());
}

BOOST_AUTO_TEST_CASE(embedding_gradients) {
  embedding l(0, 5, 4);
  l.init(3);
  // Repeated ids: their gradients must add up.
  auto ids = tensor::from_vector<std::int32_t>({2, 3}, {1, 4, 1, 0, 1, 3});
  BOOST_TEST(l.output_shape({3}) == (shape_t{3, 4}));
  auto ctx = train_ctx();
  auto y = l.forward(ids, ctx);
  BOOST_TEST(y.shape() == (shape_t{2, 3, 4}));
  auto r = random_tensor(y.shape(), 15);
  l.parameters()[0].grad_fresh = true;
  BOOST_TEST(!l.backward(r, ctx.mb, true).defined());
  tensor g = l.parameters()[0].grad.clone();
  auto objective = [&] {
    tensor out = l.forward(ids, ctx);
    l.clear_saved();
    return dot(r, out);
  };
  auto& w = l.parameters()[0];
  compare("embedding weight", w.value.mutable_data<float>(), g.data<float>(), w.value.numel(),
          objective);
  // Row 2 is never looked up: zero gradient.
  for (int c = 0; c < 4; ++c)
    BOOST_TEST(g.data<float>()[2 * 4 + c] == 0.f);
}

BOOST_AUTO_TEST_CASE(loss_gradients) {
  auto logits = random_tensor({4, 5}, 16, -2.f, 2.f);
  auto labels = tensor::from_vector<std::int32_t>({4}, {0, 3, 4, 3});
  const float scale = 0.25f;
  auto out = softmax_cross_entropy(logits, labels, scale, true);
  BOOST_REQUIRE(out.dlogits.defined());
  tensor x = logits.clone();
  auto objective = [&] { return softmax_cross_entropy(x, labels, scale, false).loss_sum * scale; };
  compare("loss dlogits", x.mutable_data<float>(), out.dlogits.data<float>(), x.numel(), objective);
}

BOOST_AUTO_TEST_CASE(loss_counts_and_validates) {
  auto logits = tensor::from_vector<float>({3, 3}, {5, 0, 0, 0, 5, 0, 0, 0, 5});
  auto labels = tensor::from_vector<std::int32_t>({3}, {0, 1, 0});
  auto out = softmax_cross_entropy(logits, labels, 1.f, false);
  BOOST_TEST(out.correct == 2);
  BOOST_TEST(!out.dlogits.defined());
  BOOST_TEST(out.loss_sum > 0.0);
  BOOST_CHECK_THROW(
      softmax_cross_entropy(logits, tensor::from_vector<std::int32_t>({2}, {0, 1}), 1.f, true),
      std::invalid_argument);
  BOOST_CHECK_THROW(
      softmax_cross_entropy(logits, tensor::from_vector<float>({3}, {0, 1, 2}), 1.f, true),
      std::invalid_argument);
  BOOST_CHECK_THROW(softmax_cross_entropy(logits.reshape({9}), labels, 1.f, true),
                    std::invalid_argument);
  BOOST_CHECK_THROW(
      softmax_cross_entropy(logits, tensor::from_vector<std::int32_t>({3}, {0, 1, 3}), 1.f, true),
      std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(backward_without_forward_throws) {
  dense l(7, 3, 2);
  BOOST_CHECK_THROW(l.backward(random_tensor({1, 2}, 1), 0, true), std::logic_error);
  relu r(1);
  auto ctx = train_ctx();
  r.forward(random_tensor({2, 2}, 2), ctx);
  BOOST_CHECK_THROW(r.backward(random_tensor({2, 3}, 3), ctx.mb, true), std::invalid_argument);
}
