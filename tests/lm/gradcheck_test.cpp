// Central finite-difference gradient checks of the language-model layers
// (causal_self_attention, transformer_block, position_embedding) w.r.t. the
// input and every parameter, of the sequence loss, and causality: changing the
// input at position t never changes an output at a position < t.
//
// Same method and tolerance as tests/models/gradcheck_test.cpp: the layers
// compute in float32; the objective f = sum(r * y) with a fixed random r is
// accumulated in double, so forward rounding puts ~1e-6 absolute noise on f,
// which a central difference with eps = 1e-2 turns into ~1e-4 noise on the
// numerical derivative; the truncation error eps^2/6 * f''' is ~1e-5 for these
// smooth layers (softmax, LayerNorm, GELU). We demand
//   |numeric - analytic| / max(|numeric|, |analytic|, 5e-2) < 1e-2
// (1% relative, absolute floor 5e-4 for near-zero derivatives). A wrong
// formula (a missing 1/sqrt(head_dim), a transposed head slice, a lost residual
// path, a masked entry leaking) is off by far more; the largest error measured
// here is ~2.3e-3 (mlp.fc1.weight of the block, through LayerNorm).

#define BOOST_TEST_DYN_LINK
#define BOOST_TEST_MODULE lm_gradcheck
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <functional>

#include "../models/gradcheck_util.hpp"
#include "../models/test_util.hpp"
#include "kernels/cpu/gemm.hpp"
#include "models/layers/causal_self_attention.hpp"
#include "models/layers/position_embedding.hpp"
#include "models/train/sequence_loss.hpp"
#include "models/layers/transformer_block.hpp"

using namespace troupe;
using namespace troupe::models;
using namespace troupe::models::test;

namespace {

struct blas_one_thread {
  blas_one_thread() { kernels::cpu::set_blas_threads_for_this_thread(1); }
};
BOOST_TEST_GLOBAL_FIXTURE(blas_one_thread);

forward_context train_ctx() {
  forward_context c;
  c.mb = 3;
  c.step = 11;
  c.training = true;
  c.seed = 42;
  return c;
}

/// The shared check (tests/models/gradcheck_util.hpp) at this suite's context.
void check_layer(layer& l, const tensor& x_in, bool saves_data = true) {
  test::check_layer(l, x_in, train_ctx(), saves_data);
}

/// Changing every feature of position t0 leaves outputs at positions < t0
/// bitwise unchanged and changes position t0.
void check_causal(layer& l, std::int64_t batch, std::int64_t t, std::int64_t dim) {
  forward_context ctx;
  ctx.training = false;
  tensor x = random_tensor({batch, t, dim}, 21);
  tensor y = l.forward(x, ctx);
  for (std::int64_t t0 = 0; t0 < t; ++t0) {
    tensor x2 = x.clone();
    float* p = x2.mutable_data<float>();
    for (std::int64_t b = 0; b < batch; ++b)
      for (std::int64_t k = 0; k < dim; ++k)
        p[(b * t + t0) * dim + k] += 0.5f + 0.1f * static_cast<float>(k);
    tensor y2 = l.forward(x2, ctx);
    const float* a = y.data<float>();
    const float* c = y2.data<float>();
    for (std::int64_t b = 0; b < batch; ++b) {
      bool earlier_same = true, at_changed = false;
      for (std::int64_t s = 0; s < t; ++s)
        for (std::int64_t k = 0; k < dim; ++k) {
          const std::int64_t i = (b * t + s) * dim + k;
          if (s < t0 && a[i] != c[i])
            earlier_same = false;
          if (s == t0 && a[i] != c[i])
            at_changed = true;
        }
      BOOST_TEST(earlier_same, l.kind()
                                   << ": output before " << t0 << " changed (sample " << b << ")");
      BOOST_TEST(at_changed, l.kind() << ": output at " << t0 << " did not change");
    }
  }
}

} // namespace

BOOST_AUTO_TEST_CASE(attention_gradients) {
  causal_self_attention l(5, 8, 2);
  l.init(7);
  BOOST_TEST(l.head_dim() == 4);
  BOOST_TEST(l.output_shape({5, 8}) == (shape_t{5, 8}));
  check_layer(l, random_tensor({2, 5, 8}, 1));
  // One head and T = 1 (a single visible position: the softmax is constant).
  causal_self_attention one(0, 6, 1);
  one.init(8);
  check_layer(one, random_tensor({3, 1, 6}, 2));
  // Four heads of dim 2.
  causal_self_attention many(1, 8, 4);
  many.init(9);
  check_layer(many, random_tensor({1, 6, 8}, 3, -2.f, 2.f));
}

BOOST_AUTO_TEST_CASE(attention_parameters_and_errors) {
  causal_self_attention l(4, 12, 3, "attn.");
  std::vector<std::string> names;
  for (auto& p : l.parameters())
    names.push_back(p.name);
  BOOST_TEST(names == (std::vector<std::string>{"4.attn.qkv.weight", "4.attn.qkv.bias",
                                                "4.attn.proj.weight", "4.attn.proj.bias"}),
             boost::test_tools::per_element());
  BOOST_TEST(l.parameters()[0].value.shape() == (shape_t{36, 12}));
  BOOST_TEST(l.parameters()[2].value.shape() == (shape_t{12, 12}));
  BOOST_TEST(l.parameters()[0].decay);
  BOOST_TEST(!l.parameters()[1].decay);
  BOOST_CHECK_THROW(causal_self_attention(0, 10, 3), std::invalid_argument);
  BOOST_CHECK_THROW(l.output_shape({5, 11}), std::invalid_argument);
  BOOST_CHECK_THROW(l.forward(random_tensor({2, 12}, 1), train_ctx()), std::invalid_argument);
  BOOST_CHECK_THROW(l.backward(random_tensor({1, 2, 12}, 1), 0, true), std::logic_error);
  // Wrong output gradient shape.
  l.init(1);
  l.forward(random_tensor({1, 3, 12}, 1), train_ctx());
  BOOST_CHECK_THROW(l.backward(random_tensor({1, 2, 12}, 1), 3, true), std::invalid_argument);
  // Parameters are back with the layer after the throwing call.
  BOOST_TEST(l.parameters()[0].value.defined());
  BOOST_TEST(l.parameters()[0].name == "4.attn.qkv.weight");
}

BOOST_AUTO_TEST_CASE(attention_is_causal) {
  causal_self_attention l(0, 8, 2);
  l.init(3);
  check_causal(l, 2, 6, 8);
}

BOOST_AUTO_TEST_CASE(block_gradients) {
  transformer_block l(2, 8, 2, 12);
  l.init(11);
  // Non-trivial LayerNorm affine parameters so their gradients matter.
  for (auto& p : l.parameters())
    if (p.name.find("ln") != std::string::npos) {
      auto v = random_tensor(p.value.shape(), std::hash<std::string>{}(p.name), 0.5f, 1.5f);
      if (p.name.ends_with("bias"))
        v = random_tensor(p.value.shape(), std::hash<std::string>{}(p.name), -0.3f, 0.3f);
      p.value = v;
    }
  check_layer(l, random_tensor({2, 4, 8}, 4));
}

BOOST_AUTO_TEST_CASE(block_parameters) {
  transformer_block l(3, 8, 2, 32);
  std::vector<std::string> names;
  for (auto& p : l.parameters())
    names.push_back(p.name);
  std::vector<std::string> expected = {"3.ln1.weight",    "3.ln1.bias",         "3.attn.qkv.weight",
                                       "3.attn.qkv.bias", "3.attn.proj.weight", "3.attn.proj.bias",
                                       "3.ln2.weight",    "3.ln2.bias",         "3.mlp.fc1.weight",
                                       "3.mlp.fc1.bias",  "3.mlp.fc2.weight",   "3.mlp.fc2.bias"};
  BOOST_TEST(names == expected, boost::test_tools::per_element());
  BOOST_TEST(l.parameters()[8].value.shape() == (shape_t{32, 8}));
  BOOST_TEST(l.parameters()[10].value.shape() == (shape_t{8, 32}));
  std::int64_t n = 0;
  for (auto& p : l.parameters())
    n += p.value.numel();
  BOOST_TEST(n == 4 * 8 + 3 * 8 * 8 + 3 * 8 + 8 * 8 + 8 + 2 * 8 * 32 + 32 + 8);
  // Decay on matrices only.
  for (auto& p : l.parameters())
    BOOST_TEST(p.decay == (p.value.rank() == 2), p.name);
  // Init is keyed by the global names: two blocks at different indices differ,
  // the same index reproduces.
  transformer_block a(3, 8, 2, 32), b(3, 8, 2, 32), c(4, 8, 2, 32);
  a.init(5);
  b.init(5);
  c.init(5);
  for (std::size_t i = 0; i < 12; ++i) {
    BOOST_TEST(runtime::bitwise_equal(a.parameters()[i].value, b.parameters()[i].value));
    if (a.parameters()[i].value.rank() == 2)
      BOOST_TEST(!runtime::bitwise_equal(a.parameters()[i].value, c.parameters()[i].value));
  }
  BOOST_TEST(a.parameters()[0].value.values<float>()[0] == 1.f); // LayerNorm gamma
}

BOOST_AUTO_TEST_CASE(block_is_causal) {
  transformer_block l(0, 8, 2, 16);
  l.init(4);
  check_causal(l, 2, 5, 8);
}

BOOST_AUTO_TEST_CASE(block_without_input_grad_keeps_parameter_grads) {
  transformer_block a(0, 8, 2, 16), b(0, 8, 2, 16);
  a.init(2);
  b.init(2);
  auto x = random_tensor({2, 3, 8}, 5);
  auto r = random_tensor({2, 3, 8}, 6);
  a.forward(x, train_ctx());
  b.forward(x, train_ctx());
  BOOST_TEST(a.backward(r, 3, true).defined());
  BOOST_TEST(!b.backward(r, 3, false).defined());
  for (std::size_t i = 0; i < 12; ++i)
    BOOST_TEST(runtime::bitwise_equal(a.parameters()[i].grad, b.parameters()[i].grad));
}

BOOST_AUTO_TEST_CASE(position_embedding_gradients) {
  position_embedding l(1, 6, 5);
  l.init(3);
  // T = 4 < context = 6: rows 4 and 5 get zero gradient.
  check_layer(l, random_tensor({3, 4, 5}, 7), false);
  const float* g = l.parameters()[0].grad.data<float>();
  for (std::int64_t i = 4 * 5; i < 6 * 5; ++i)
    BOOST_TEST(g[i] == 0.f);
  BOOST_CHECK_THROW(l.output_shape({7, 5}), std::invalid_argument);
  BOOST_CHECK_THROW(l.output_shape({4, 4}), std::invalid_argument);
  BOOST_TEST(l.parameters()[0].name == "1.weight");
}

BOOST_AUTO_TEST_CASE(position_embedding_accumulates_micro_batches) {
  position_embedding l(0, 4, 3);
  l.init(1);
  auto ctx = train_ctx();
  l.parameters()[0].grad_fresh = true;
  auto c1 = ctx, c2 = ctx;
  c1.mb = 1;
  c2.mb = 2;
  l.forward(random_tensor({2, 4, 3}, 1), c1);
  l.forward(random_tensor({1, 2, 3}, 2), c2);
  auto r1 = random_tensor({2, 4, 3}, 3);
  auto r2 = random_tensor({1, 2, 3}, 4);
  l.backward(r2, 2, false);
  l.backward(r1, 1, false);
  const float* g = l.parameters()[0].grad.data<float>();
  const float* a = r1.data<float>();
  const float* b = r2.data<float>();
  for (std::int64_t i = 0; i < 12; ++i) {
    float want = a[i] + a[12 + i] + (i < 6 ? b[i] : 0.f);
    BOOST_TEST(std::abs(g[i] - want) < 1e-6);
  }
}

BOOST_AUTO_TEST_CASE(sequence_loss_gradient_and_scale) {
  const std::int64_t batch = 2, t = 3, v = 5;
  tensor logits = random_tensor({batch, t, v}, 8, -2.f, 2.f);
  tensor targets = random_ids({batch, t}, 9, static_cast<std::int32_t>(v));
  const float scale = 1.0f / static_cast<float>(batch * t);
  auto out = sequence_cross_entropy(logits, targets, scale, true);
  BOOST_TEST(out.dlogits.shape() == logits.shape());
  // The same as softmax_cross_entropy on the [B*T, V] view.
  auto flat = softmax_cross_entropy(logits.reshape({batch * t, v}), targets.reshape({batch * t}),
                                    scale, true);
  BOOST_TEST(out.loss_sum == flat.loss_sum);
  BOOST_TEST(runtime::bitwise_equal(out.dlogits.reshape({batch * t, v}), flat.dlogits));
  // dlogits is the gradient of scale * loss_sum (the mean per-token loss).
  auto f = [&] { return scale * sequence_cross_entropy(logits, targets, scale, false).loss_sum; };
  compare("sequence dlogits", logits.mutable_data<float>(), out.dlogits.data<float>(),
          logits.numel(), f);
  BOOST_CHECK_THROW(sequence_cross_entropy(logits, targets.reshape({batch * t}), scale, true),
                    std::invalid_argument);
  BOOST_CHECK_THROW(sequence_cross_entropy(logits, random_ids({batch, t}, 1, 9), scale, true),
                    std::invalid_argument);
}
