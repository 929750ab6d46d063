// Plain SGD made inside the backward (sequential::backward's sgd_lr, used
// where a step's update is folded into its only micro-batch's backward):
// dense weights get weight -= lr * dW inside the weight-gradient GEMM
// (alpha -lr, beta 1) and the optimizer skips them. The GEMM rounds
// lr * dW + weight once where the optimizer rounded twice, so weights agree
// with backward-then-step within a rounding, not bitwise; everything else
// (dx, biases) is bitwise.

#define BOOST_TEST_DYN_LINK
#define BOOST_TEST_MODULE models_sgd_in_backward
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "models/layers/model_spec.hpp"
#include "models/layers/sequential.hpp"
#include "models/train/optimizer.hpp"
#include "test_util.hpp"

using namespace troupe;
using namespace troupe::models;
using namespace troupe::models::test;

namespace {

constexpr float lr = 0.1f;

model_spec small_mlp() {
  return odd_widths_mlp("sgd_in_backward");
}

std::unique_ptr<optimizer> plain_sgd() {
  return make_optimizer({{"type", "sgd"}, {"lr", lr}});
}

/// The parameters of layer `i` ("<i>.weight", "<i>.bias"; none for a relu).
std::vector<parameter*> layer_params(sequential& net, std::size_t i) {
  std::vector<parameter*> ps;
  for (const char* leaf : {"weight", "bias"})
    if (auto* p = net.find_parameter(std::to_string(i) + "." + leaf))
      ps.push_back(p);
  return ps;
}

/// Largest |a - b| / max(1, |b|) over the elements.
double max_rel_diff(const tensor& a, const tensor& b) {
  double worst = 0;
  const float* pa = a.data<float>();
  const float* pb = b.data<float>();
  for (std::int64_t i = 0; i < a.numel(); ++i)
    worst = std::max(worst, std::abs(static_cast<double>(pa[i]) - pb[i]) /
                                std::max(1.0, std::abs(static_cast<double>(pb[i]))));
  return worst;
}

/// Forward and backward of micro-batches `mbs` (the last one folded, with
/// sgd_lr when `in_backward`), then the optimizer: as the layer shard runs a
/// step whose update is folded into its last backward.
tensor train_step(sequential& net, optimizer& opt, const std::vector<tensor>& xs,
                  bool in_backward) {
  forward_context ctx;
  ctx.training = true;
  net.zero_grad();
  std::vector<tensor> dys;
  for (std::size_t m = 0; m < xs.size(); ++m) {
    ctx.mb = static_cast<micro_batch_id>(m);
    auto y = net.forward(xs[m], ctx);
    dys.push_back(random_tensor(y.shape(), 100 + static_cast<std::uint64_t>(m)));
  }
  tensor dx;
  for (std::size_t m = 0; m < xs.size(); ++m) {
    const bool last = m + 1 == xs.size();
    const auto mb = static_cast<micro_batch_id>(m);
    if (!last) {
      dx = net.backward(dys[m], mb, true);
    } else if (in_backward) {
      dx = net.backward(
          dys[m], mb, true, [&](std::size_t i) { opt.update(layer_params(net, i), lr); }, lr);
      opt.count_step();
    } else {
      dx = net.backward(dys[m], mb, true);
      opt.step(net.parameters(), lr);
    }
  }
  return dx;
}

/// Two equal nets, each with its own plain SGD: one updating in the
/// backward, the other backward-then-step.
struct twins {
  sequential net{small_mlp(), 0, small_mlp().layers.size(), 7};
  sequential ref{small_mlp(), 0, small_mlp().layers.size(), 7};
  std::unique_ptr<optimizer> opt = plain_sgd();
  std::unique_ptr<optimizer> ref_opt = plain_sgd();
};

} // namespace

BOOST_AUTO_TEST_CASE(only_plain_sgd_may_update_in_the_backward) {
  BOOST_TEST(plain_sgd()->is_plain_sgd());
  BOOST_TEST(!make_optimizer({{"type", "sgd"}, {"momentum", 0.9}})->is_plain_sgd());
  BOOST_TEST(!make_optimizer({{"type", "sgd"}, {"weight_decay", 1e-4}})->is_plain_sgd());
  BOOST_TEST(!make_optimizer({{"type", "adam"}})->is_plain_sgd());
  BOOST_TEST(!make_optimizer({{"type", "adamw"}})->is_plain_sgd());
}

BOOST_AUTO_TEST_CASE(update_skips_what_the_backward_updated_once) {
  auto a = random_tensor({4, 3}, 1);
  parameter p{"0.weight", a.clone(), random_tensor({4, 3}, 2)};
  p.grad_fresh = false;
  p.updated_in_backward = true;
  auto opt = plain_sgd();
  opt->update(std::vector<parameter*>{&p}, lr);
  BOOST_TEST(runtime::bitwise_equal(p.value, a)); // skipped
  BOOST_TEST(!p.updated_in_backward);             // and the mark cleared
  opt->update(std::vector<parameter*>{&p}, lr);
  BOOST_TEST(!runtime::bitwise_equal(p.value, a)); // the next update is made
}

BOOST_AUTO_TEST_CASE(one_micro_batch_updates_weights_in_the_gemm) {
  twins t;
  auto& [net, ref, opt, ref_opt] = t;
  for (int step = 0; step < 3; ++step) {
    BOOST_TEST_CONTEXT("step " << step) {
      std::vector<tensor> xs{random_tensor({9, 33}, 10 + static_cast<std::uint64_t>(step))};
      auto dx = train_step(net, *opt, xs, true);
      auto want_dx = train_step(ref, *ref_opt, xs, false);
      // From equal weights (step 0), dx is bitwise: it is computed before
      // the weight changes. Later steps start from weights a rounding apart.
      if (step == 0)
        BOOST_TEST(runtime::bitwise_equal(dx, want_dx));
      else
        BOOST_TEST(max_rel_diff(dx, want_dx) < 1e-6);
      auto got = net.parameters();
      auto want = ref.parameters();
      BOOST_TEST_REQUIRE(got.size() == want.size());
      for (std::size_t i = 0; i < got.size(); ++i) {
        BOOST_TEST_CONTEXT(got[i]->name) {
          BOOST_TEST(!got[i]->updated_in_backward);
          if (step == 0 && got[i]->name.ends_with("bias"))
            BOOST_TEST(runtime::bitwise_equal(got[i]->value, want[i]->value));
          else // one rounding instead of two per update: a few ulps after 3 steps
            BOOST_TEST(max_rel_diff(got[i]->value, want[i]->value) < 1e-6);
        }
      }
    }
  }
  BOOST_TEST(opt->steps() == 3);
}

BOOST_AUTO_TEST_CASE(accumulating_micro_batches_take_the_plain_path) {
  twins t;
  auto& [net, ref, opt, ref_opt] = t;
  std::vector<tensor> xs{random_tensor({5, 33}, 20), random_tensor({4, 33}, 21)};
  train_step(net, *opt, xs, true);
  train_step(ref, *ref_opt, xs, false);
  auto got = net.parameters();
  auto want = ref.parameters();
  for (std::size_t i = 0; i < got.size(); ++i) {
    // The last backward adds to a gradient: no GEMM can make the update, and
    // the optimizer makes it as ever, bitwise.
    BOOST_TEST(runtime::bitwise_equal(got[i]->value, want[i]->value), got[i]->name);
    BOOST_TEST(runtime::bitwise_equal(got[i]->grad, want[i]->grad), got[i]->name);
  }
}
