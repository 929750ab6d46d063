// The pieces a language-model training step is made of: micro-batches of a
// transformer accumulate the gradients of one batch, the zoo transformer's
// spec (round trip, names, split-independent init), the learning-rate
// schedule, and global gradient-norm clipping that composes across parameter
// groups (pipeline stages, shards).

#define BOOST_TEST_DYN_LINK
#define BOOST_TEST_MODULE lm_training_parts
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <map>
#include <numbers>
#include <set>

#include "../models/test_util.hpp"
#include "kernels/cpu/gemm.hpp"
#include "models/train/grad_clip.hpp"
#include "models/layers/layer_registry.hpp"
#include "models/train/lr_schedule.hpp"
#include "models/layers/model_spec.hpp"
#include "models/train/optimizer.hpp"
#include "models/train/sequence_loss.hpp"
#include "models/layers/sequential.hpp"
#include "models/zoo.hpp"

using namespace troupe;
using namespace troupe::models;
using namespace troupe::models::test;
using json = nlohmann::json;

namespace {

struct blas_one_thread {
  blas_one_thread() { kernels::cpu::set_blas_threads_for_this_thread(1); }
};
BOOST_TEST_GLOBAL_FIXTURE(blas_one_thread);

// Split batches reassociate sums in GEMMs and reductions: equal to rounding.
constexpr double tol = 1e-5;

model_spec tiny_lm(std::int64_t context = 6) {
  return model_builder("tiny-lm")
      .input({context}, runtime::dtype::i32)
      .embedding(11, 8)
      .position_embedding(context, 8)
      .transformer_block(8, 2, 16)
      .transformer_block(8, 2, 16)
      .layer_norm(8)
      .dense(8, 11)
      .build();
}

std::map<std::string, tensor> grads_of(sequential& s) {
  std::map<std::string, tensor> g;
  for (auto& [name, p] : s.named_parameters())
    g[name] = p->grad.clone();
  return g;
}

/// A parameter with the given gradient values.
parameter with_grad(const std::string& name, std::vector<float> g) {
  parameter p;
  p.name = name;
  const auto n = static_cast<std::int64_t>(g.size());
  p.value = tensor::zeros(runtime::dtype::f32, {n});
  p.grad = tensor::from_vector<float>({n}, g);
  return p;
}

} // namespace

BOOST_AUTO_TEST_CASE(micro_batches_accumulate_like_one_batch) {
  // Whole batch of 8 sequences vs micro-batches [0,3) and [3,8) backwarded in
  // reverse order, with the sequence loss scaled by 1/(global batch * T).
  auto spec = tiny_lm();
  const std::int64_t t = 6, batch = 8;
  sequential whole(spec, 0, spec.layers.size(), 17), split(spec, 0, spec.layers.size(), 17);
  tensor x = random_ids({batch, t}, 1, 11), target = random_ids({batch, t}, 2, 11);
  const float scale = 1.0f / static_cast<float>(batch * t);
  forward_context ctx;
  ctx.step = 2;

  whole.zero_grad();
  auto y = whole.forward(x, ctx);
  auto loss = sequence_cross_entropy(y, target, scale, true);
  BOOST_TEST(!whole.backward(loss.dlogits, 0, false).defined());
  BOOST_TEST(whole.saved_bytes() == 0u);
  auto expected = grads_of(whole);

  split.zero_grad();
  auto c1 = ctx, c2 = ctx;
  c1.mb = 1;
  c2.mb = 2;
  c2.sample_offset = 3;
  auto y1 = split.forward(rows(x, 0, 3), c1);
  const auto one = split.saved_bytes();
  auto y2 = split.forward(rows(x, 3, 8), c2);
  BOOST_TEST(split.saved_bytes() > one);
  BOOST_TEST(runtime::relative_difference(y1, rows(y, 0, 3)) < tol);
  BOOST_TEST(runtime::relative_difference(y2, rows(y, 3, 8)) < tol);
  auto l1 = sequence_cross_entropy(y1, rows(target, 0, 3), scale, true);
  auto l2 = sequence_cross_entropy(y2, rows(target, 3, 8), scale, true);
  BOOST_TEST(std::abs(l1.loss_sum + l2.loss_sum - loss.loss_sum) < 1e-4 * loss.loss_sum);
  split.backward(l2.dlogits, 2, false);
  split.backward(l1.dlogits, 1, false);
  BOOST_TEST(split.saved_bytes() == 0u);
  auto got = grads_of(split);
  BOOST_REQUIRE(got.size() == expected.size());
  for (auto& [name, g] : expected)
    BOOST_TEST_CONTEXT(name) {
      BOOST_TEST(runtime::relative_difference(got[name], g) < tol);
    }
}

BOOST_AUTO_TEST_CASE(stages_chain_like_the_whole_model) {
  // Stage boundaries between blocks: [0, 3) and [3, 6) chained equal the whole
  // model bitwise, and the gradients match.
  auto spec = tiny_lm();
  sequential whole(spec, 0, 6, 3), s0(spec, 0, 3, 3), s1(spec, 3, 6, 3);
  auto x = random_ids({2, 6}, 4, 11);
  forward_context ctx;
  auto y = whole.forward(x, ctx);
  auto y2 = s1.forward(s0.forward(x, ctx), ctx);
  BOOST_TEST(runtime::bitwise_equal(y, y2));
  auto r = random_tensor(y.shape(), 5);
  whole.backward(r, 0, false);
  auto dh = s1.backward(r, 0, true);
  BOOST_TEST(!s0.backward(dh, 0, false).defined());
  auto w = whole.named_parameters();
  for (auto* part : {&s0, &s1})
    for (auto& [name, p] : part->named_parameters()) {
      BOOST_TEST(runtime::bitwise_equal(p->value, w.at(name)->value), name);
      BOOST_TEST(runtime::bitwise_equal(p->grad, w.at(name)->grad), name);
    }
}

BOOST_AUTO_TEST_CASE(zoo_transformer_spec) {
  auto spec = zoo_model("transformer");
  BOOST_TEST(spec.input_shape == (shape_t{64}));
  BOOST_TEST((spec.input_dtype == runtime::dtype::i32));
  BOOST_TEST(output_shape(spec) == (shape_t{64, 89}));
  json j = spec;
  BOOST_TEST((model_spec::from_json(json::parse(j.dump())) == spec));
  sequential m(spec, 0, spec.layers.size(), 1);
  std::set<std::string> names;
  for (auto* p : m.parameters())
    BOOST_TEST(names.insert(p->name).second, "duplicate " << p->name);
  BOOST_TEST(names.count("2.attn.qkv.weight") == 1u);
  BOOST_TEST(names.count("3.mlp.fc2.bias") == 1u);
  BOOST_TEST(names.count("1.weight") == 1u); // positions
  BOOST_TEST(m.parameter_count() < 200000);
  auto flops = layer_flops(spec);
  BOOST_TEST(flops[2] > flops[5]); // a block costs more than the head
  BOOST_TEST(flops[2] == flops[3]);
  // Split-independent init: a stage holding only block 3 has the whole
  // model's values.
  sequential stage(spec, 3, 4, 1);
  for (auto& [name, p] : stage.named_parameters())
    BOOST_TEST(runtime::bitwise_equal(p->value, m.find_parameter(name)->value), name);
}

BOOST_AUTO_TEST_CASE(registry_rejects_bad_lm_specs) {
  auto expect = [](json layer, const std::string& part) {
    try {
      make_layer(layer, 4);
      BOOST_ERROR("accepted " << layer.dump());
    } catch (const std::invalid_argument& e) {
      BOOST_TEST(std::string(e.what()).find(part) != std::string::npos, e.what());
    }
  };
  expect({{"type", "causal_self_attention"}, {"dim", 10}, {"heads", 3}}, "'heads'");
  expect({{"type", "causal_self_attention"}, {"dim", 8}}, "'heads' is missing");
  expect({{"type", "transformer_block"}, {"dim", 8}, {"heads", 2}}, "'hidden'");
  expect({{"type", "transformer_block"}, {"dim", 8}, {"heads", 2}, {"hidden", 4}, {"x", 1}},
         "unknown field 'x'");
  expect({{"type", "position_embedding"}, {"context", 0}, {"dim", 4}}, "'context'");
  // Sequence length beyond the position table.
  BOOST_CHECK_THROW(model_builder("long")
                        .input({9}, runtime::dtype::i32)
                        .embedding(5, 4)
                        .position_embedding(8, 4)
                        .build(),
                    std::invalid_argument);
  // Round trip of each new type through the registry.
  for (json s : {json{{"type", "position_embedding"}, {"context", 8}, {"dim", 4}},
                 json{{"type", "causal_self_attention"}, {"dim", 8}, {"heads", 2}},
                 json{{"type", "transformer_block"}, {"dim", 8}, {"heads", 4}, {"hidden", 24}}})
    BOOST_TEST(make_layer(s, 0)->spec() == s);
}

BOOST_AUTO_TEST_CASE(training_is_deterministic) {
  // Two short AdamW runs with clipping and the schedule from the same seed
  // give bitwise equal parameters.
  auto run = [] {
    auto spec = tiny_lm();
    sequential m(spec, 0, spec.layers.size(), 9);
    kernels::cpu::adam_options o;
    o.weight_decay = 0.1f;
    o.decoupled = true;
    adam opt(o);
    lr_schedule sched({1e-2f, 2, 5, 1e-3f});
    for (std::int64_t step = 0; step < 5; ++step) {
      m.zero_grad();
      forward_context ctx;
      ctx.step = step;
      auto x = random_ids({4, 6}, 100 + static_cast<std::uint64_t>(step), 11);
      auto tg = random_ids({4, 6}, 200 + static_cast<std::uint64_t>(step), 11);
      auto loss = sequence_cross_entropy(m.forward(x, ctx), tg, 1.f / 24.f, true);
      m.backward(loss.dlogits, 0, false);
      auto ps = m.parameters();
      clip_by_global_norm(ps, sum_of_squares(ps), 0.5);
      opt.step(ps, sched.lr_at(step));
    }
    std::map<std::string, tensor> v;
    for (auto& [name, p] : m.named_parameters())
      v[name] = p->value.clone();
    return v;
  };
  auto a = run(), b = run();
  for (auto& [name, t] : a)
    BOOST_TEST(runtime::bitwise_equal(t, b.at(name)), name);
}

BOOST_AUTO_TEST_CASE(lr_schedule_values) {
  lr_schedule s({1.0f, 4, 14, 0.1f});
  BOOST_TEST(s.lr_at(0) == 0.25f);
  BOOST_TEST(s.lr_at(1) == 0.5f);
  BOOST_TEST(s.lr_at(3) == 1.0f);
  BOOST_TEST(s.lr_at(4) == 1.0f); // cosine starts at the peak
  // Halfway through the decay (step 9 of [4, 14)): (base + min) / 2.
  BOOST_TEST(std::abs(s.lr_at(9) - 0.55f) < 1e-6);
  const double p = 2.0 / 10.0;
  BOOST_TEST(std::abs(s.lr_at(6) - (0.1 + 0.9 * 0.5 * (1 + std::cos(std::numbers::pi * p)))) <
             1e-6);
  BOOST_TEST(s.lr_at(14) == 0.1f);
  BOOST_TEST(s.lr_at(1000) == 0.1f);
  for (std::int64_t i = 4; i < 14; ++i)
    BOOST_TEST(s.lr_at(i + 1) <= s.lr_at(i)); // monotone decay
  lr_schedule no_warmup({2.0f, 0, 10, 0.0f});
  BOOST_TEST(no_warmup.lr_at(0) == 2.0f);
  BOOST_TEST(std::abs(no_warmup.lr_at(9)) < 0.06f);
  BOOST_CHECK_THROW(s.lr_at(-1), std::invalid_argument);
  BOOST_CHECK_THROW(lr_schedule({1.0f, 5, 5, 0.f}), std::invalid_argument);
  BOOST_CHECK_THROW(lr_schedule({1.0f, 0, 5, 2.f}), std::invalid_argument);
  BOOST_CHECK_THROW(lr_schedule({0.0f, 0, 5, 0.f}), std::invalid_argument);
  BOOST_CHECK_THROW(lr_schedule({1.0f, -1, 5, 0.f}), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(global_norm_clipping) {
  auto a = with_grad("a", {3.f, 0.f});
  auto b = with_grad("b", {4.f});
  parameter none; // no gradient: skipped
  none.value = tensor::zeros(runtime::dtype::f32, {2});
  std::vector<parameter*> all = {&a, &b, &none};
  BOOST_TEST(sum_of_squares(all) == 25.0);
  BOOST_TEST(global_grad_norm(all) == 5.0);
  const double norm = clip_by_global_norm(all, sum_of_squares(all), 1.0);
  BOOST_TEST(norm == 5.0);
  const float c = static_cast<float>(1.0 / (5.0 + 1e-6));
  BOOST_TEST(a.grad.values<float>()[0] == 3.f * c);
  BOOST_TEST(b.grad.values<float>()[0] == 4.f * c);
  BOOST_TEST(!none.grad.defined());
  // Below the threshold nothing changes.
  auto small = with_grad("s", {0.1f, 0.2f});
  std::vector<parameter*> one = {&small};
  clip_by_global_norm(one, sum_of_squares(one), 1.0);
  BOOST_TEST(small.grad.values<float>()[1] == 0.2f);
  // Non-finite norm: untouched, reported.
  auto bad = with_grad("n", {std::nanf(""), 1.f});
  std::vector<parameter*> b1 = {&bad};
  BOOST_TEST(!std::isfinite(clip_by_global_norm(b1, sum_of_squares(b1), 1.0)));
  BOOST_TEST(bad.grad.values<float>()[1] == 1.f);
  BOOST_CHECK_THROW(clip_by_global_norm(one, 1.0, 0.0), std::invalid_argument);
  BOOST_CHECK_THROW(clip_by_global_norm(one, -1.0, 1.0), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(clipping_composes_across_groups) {
  // Two "stages" that add their partial sums of squares and clip with the
  // total give exactly what one group over all parameters gives.
  auto spec = tiny_lm();
  sequential whole(spec, 0, spec.layers.size(), 4);
  auto x = random_ids({3, 6}, 7, 11);
  forward_context ctx;
  auto y = whole.forward(x, ctx);
  whole.backward(random_tensor(y.shape(), 8, -5.f, 5.f), 0, false);
  auto params = whole.parameters();
  std::vector<tensor> saved;
  for (auto* p : params)
    saved.push_back(p->grad.clone());

  const double total = sum_of_squares(params);
  const double norm = clip_by_global_norm(params, total, 0.25);
  BOOST_TEST(norm > 0.25);
  std::vector<tensor> one_group;
  for (auto* p : params)
    one_group.push_back(p->grad.clone());
  BOOST_TEST(std::abs(global_grad_norm(params) - 0.25) < 1e-5);

  for (std::size_t i = 0; i < params.size(); ++i)
    params[i]->grad = saved[i].clone();
  const auto half = static_cast<std::ptrdiff_t>(params.size() / 3);
  std::vector<parameter*> g0(params.begin(), params.begin() + half),
      g1(params.begin() + half, params.end());
  const double partial = sum_of_squares(g0) + sum_of_squares(g1);
  BOOST_TEST(std::abs(partial - total) <= 1e-12 * total);
  BOOST_TEST(clip_by_global_norm(g0, partial, 0.25) == clip_by_global_norm(g1, partial, 0.25));
  for (std::size_t i = 0; i < params.size(); ++i)
    BOOST_TEST(runtime::relative_difference(params[i]->grad, one_group[i]) < 1e-7, params[i]->name);
}
