// Micro-batch behaviour of layers and sequential: several micro-batches in
// flight, backwarded in any order, accumulate the same gradients as one batch
// holding all their samples; saved activations are freed by backward.

#define BOOST_TEST_DYN_LINK
#define BOOST_TEST_MODULE models_microbatch
#include <boost/test/unit_test.hpp>

#include <map>
#include <vector>

#include "models/layers/model_spec.hpp"
#include "models/layers/sequential.hpp"
#include "test_util.hpp"

using namespace troupe;
using namespace troupe::models;
using namespace troupe::models::test;

namespace {

// Sums in GEMMs and reductions are reassociated when a batch is split, so the
// results agree to float rounding, not bitwise.
constexpr double tol = 1e-5;

std::map<std::string, tensor> grads_of(sequential& s) {
  std::map<std::string, tensor> g;
  for (auto& [name, p] : s.named_parameters())
    g[name] = p->grad.clone();
  return g;
}

/// One batch of 8 vs micro-batches [0,4) and [4,8) backwarded in reverse order.
void check_split(const model_spec& spec, const tensor& x) {
  sequential whole(spec, 0, spec.layers.size(), 17);
  sequential split(spec, 0, spec.layers.size(), 17);
  forward_context ctx;
  ctx.step = 4;
  ctx.seed = 23;
  ctx.mb = 0;
  ctx.sample_offset = 0;

  tensor y = whole.forward(x, ctx);
  tensor r = random_tensor(y.shape(), 77);
  whole.zero_grad();
  tensor dx = whole.backward(r, 0, x.type() == runtime::dtype::f32);
  BOOST_TEST(whole.saved_bytes() == 0u);
  auto expected = grads_of(whole);

  split.zero_grad();
  auto c1 = ctx, c2 = ctx;
  c1.mb = 1;
  c1.sample_offset = 0;
  c2.mb = 2;
  c2.sample_offset = 4;
  tensor y1 = split.forward(rows(x, 0, 4), c1);
  const auto one = split.saved_bytes();
  BOOST_TEST(one > 0u);
  tensor y2 = split.forward(rows(x, 4, 8), c2);
  BOOST_TEST(split.saved_bytes() > one);
  BOOST_TEST(runtime::relative_difference(y1, rows(y, 0, 4)) < tol);
  BOOST_TEST(runtime::relative_difference(y2, rows(y, 4, 8)) < tol);

  const bool input_grad = x.type() == runtime::dtype::f32;
  tensor dx2 = split.backward(rows(r, 4, 8), 2, input_grad);
  tensor dx1 = split.backward(rows(r, 0, 4), 1, input_grad);
  BOOST_TEST(split.saved_bytes() == 0u);
  if (input_grad) {
    BOOST_TEST(runtime::relative_difference(dx1, rows(dx, 0, 4)) < tol);
    BOOST_TEST(runtime::relative_difference(dx2, rows(dx, 4, 8)) < tol);
  } else {
    BOOST_TEST(!dx1.defined());
    BOOST_TEST(!dx2.defined());
  }
  auto got = grads_of(split);
  BOOST_REQUIRE(got.size() == expected.size());
  for (auto& [name, g] : expected) {
    BOOST_TEST_CONTEXT(name) {
      BOOST_TEST(runtime::relative_difference(got[name], g) < tol);
    }
  }
}

} // namespace

BOOST_AUTO_TEST_CASE(dense_gelu_dropout_layer_norm_stack) {
  auto spec = model_builder("mb")
                  .input({6})
                  .dense(6, 8)
                  .gelu()
                  .dropout(0.25)
                  .layer_norm(8)
                  .dense(8, 5)
                  .relu()
                  .dense(5, 3)
                  .build();
  check_split(spec, random_tensor({8, 6}, 1));
}

BOOST_AUTO_TEST_CASE(conv_pool_stack) {
  auto spec = model_builder("cnn-mb")
                  .input({2, 9, 9})
                  .conv2d(2, 3, 3, 2, 1)
                  .relu()
                  .maxpool2d(2)
                  .flatten()
                  .dense(12, 4)
                  .build();
  check_split(spec, random_tensor({8, 2, 9, 9}, 2));
}

BOOST_AUTO_TEST_CASE(embedding_stack) {
  auto spec = model_builder("emb-mb")
                  .input({5}, runtime::dtype::i32)
                  .embedding(10, 6)
                  .layer_norm(6)
                  .flatten()
                  .dense(30, 3)
                  .build();
  check_split(spec, random_ids({8, 5}, 3, 10));
}

BOOST_AUTO_TEST_CASE(repeated_backward_accumulates_until_zero_grad) {
  auto spec = model_builder("acc").input({4}).dense(4, 3).relu().dense(3, 2).build();
  sequential s(spec, 0, 3, 1);
  auto x = random_tensor({5, 4}, 4);
  forward_context ctx;
  auto r = random_tensor({5, 2}, 5);
  s.zero_grad();
  s.forward(x, ctx);
  s.backward(r, 0, false);
  auto once = grads_of(s);
  s.forward(x, ctx);
  s.backward(r, 0, false);
  for (auto& [name, g] : grads_of(s)) {
    auto twice = once[name].clone();
    float* t = twice.mutable_data<float>();
    for (std::int64_t i = 0; i < twice.numel(); ++i)
      t[i] *= 2.f;
    BOOST_TEST(runtime::relative_difference(g, twice) < 1e-6);
  }
  s.zero_grad();
  s.forward(x, ctx);
  s.backward(r, 0, false);
  for (auto& [name, g] : grads_of(s))
    BOOST_TEST(runtime::bitwise_equal(g, once[name]));
}

BOOST_AUTO_TEST_CASE(clear_saved_and_evaluation) {
  auto spec = model_builder("eval").input({4}).dense(4, 3).gelu().dropout(0.5).build();
  sequential s(spec, 0, 3, 1);
  forward_context ctx;
  ctx.mb = 7;
  s.forward(random_tensor({2, 4}, 6), ctx);
  BOOST_TEST(s.saved_bytes() > 0u);
  s.clear_saved();
  BOOST_TEST(s.saved_bytes() == 0u);
  BOOST_CHECK_THROW(s.backward(random_tensor({2, 3}, 7), 7, true), std::logic_error);
  ctx.training = false;
  s.forward(random_tensor({2, 4}, 6), ctx);
  BOOST_TEST(s.saved_bytes() == 0u);
}

BOOST_AUTO_TEST_CASE(stage_split_matches_whole_model) {
  // Pipeline stages [0,2) and [2,5) chained equal the whole model, bitwise
  // (same kernels on the same rows in the same order).
  auto spec =
      model_builder("stages").input({6}).dense(6, 8).relu().dense(8, 8).relu().dense(8, 3).build();
  sequential whole(spec, 0, 5, 3), s0(spec, 0, 2, 3), s1(spec, 2, 5, 3);
  auto x = random_tensor({4, 6}, 8);
  forward_context ctx;
  auto y = whole.forward(x, ctx);
  auto h = s0.forward(x, ctx);
  auto y2 = s1.forward(h, ctx);
  BOOST_TEST(runtime::bitwise_equal(y, y2));
  auto r = random_tensor(y.shape(), 9);
  whole.backward(r, 0, false);
  auto dh = s1.backward(r, 0, true);
  BOOST_TEST(!s0.backward(dh, 0, false).defined());
  auto w = whole.named_parameters();
  for (auto* part : {&s0, &s1})
    for (auto& [name, p] : part->named_parameters())
      BOOST_TEST(runtime::bitwise_equal(p->grad, w.at(name)->grad));
  BOOST_TEST(s1.find_parameter("2.weight") != nullptr);
  BOOST_TEST(s1.find_parameter("0.weight") == nullptr);
}

namespace {

/// Zero-bubble split: three micro-batches forwarded, then their input
/// gradients and only then their weight gradients, each in micro-batch
/// order as the schedules run them (layers without a split add their
/// gradients in backward_input), against the fused backward in
/// micro-batch order: bitwise the same dx and parameter gradients, and the
/// state kept for the weight gradients is freed by backward_weight.
void check_split_backward(const model_spec& spec, const tensor& x, bool keeps_for_weight) {
  sequential fused(spec, 0, spec.layers.size(), 5);
  sequential split(spec, 0, spec.layers.size(), 5);
  const bool input_grad = x.type() == runtime::dtype::f32;
  std::vector<tensor> xs, dys, dx_fused(3), dx_split(3);
  for (int m = 0; m < 3; ++m) {
    forward_context ctx;
    ctx.mb = m;
    ctx.sample_offset = 3 * m;
    ctx.seed = 9;
    xs.push_back(rows(x, 3 * m, 3 * m + 3));
    auto y = fused.forward(xs.back(), ctx);
    BOOST_TEST(runtime::bitwise_equal(split.forward(xs.back(), ctx), y));
    dys.push_back(random_tensor(y.shape(), 40 + static_cast<std::uint64_t>(m)));
  }
  fused.zero_grad();
  split.zero_grad();
  for (int m = 0; m < 3; ++m)
    dx_fused[static_cast<std::size_t>(m)] =
        fused.backward(dys[static_cast<std::size_t>(m)], m, input_grad);
  for (int m = 0; m < 3; ++m)
    dx_split[static_cast<std::size_t>(m)] =
        split.backward_input(dys[static_cast<std::size_t>(m)], m, input_grad);
  BOOST_TEST((split.saved_bytes() > 0) == keeps_for_weight);
  std::vector<std::size_t> after;
  for (int m = 0; m < 3; ++m)
    split.backward_weight(m, [&](std::size_t i) { after.push_back(i); });
  BOOST_TEST(split.saved_bytes() == 0u);
  BOOST_TEST(after.size() == 3 * split.size());
  BOOST_TEST(after.front() == split.size() - 1); // the layers in backward order
  for (int m = 0; m < 3; ++m)
    BOOST_TEST(runtime::bitwise_equal(dx_split[static_cast<std::size_t>(m)],
                                      dx_fused[static_cast<std::size_t>(m)]));
  auto want = grads_of(fused);
  auto got = grads_of(split);
  BOOST_REQUIRE(got.size() == want.size());
  for (auto& [name, g] : want)
    BOOST_TEST(runtime::bitwise_equal(got[name], g), name);
}

} // namespace

BOOST_AUTO_TEST_CASE(split_backward_is_bitwise_the_fused_one) {
  check_split_backward(
      model_builder("zb").input({6}).dense(6, 8).relu().dense(8, 8).gelu().dense(8, 3).build(),
      random_tensor({9, 6}, 11), true);
  // conv2d (one kernel for both gradients), layer norm, embedding: the
  // default, everything in backward_input.
  check_split_backward(model_builder("zb-cnn")
                           .input({2, 9, 9})
                           .conv2d(2, 3, 3, 2, 1)
                           .relu()
                           .flatten()
                           .layer_norm(75)
                           .build(),
                       random_tensor({9, 2, 9, 9}, 12), false);
  check_split_backward(
      model_builder("zb-emb").input({5}, runtime::dtype::i32).embedding(10, 6).flatten().build(),
      random_ids({9, 5}, 13, 10), false);
}
