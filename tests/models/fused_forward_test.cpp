// sequential fuses a dense layer's bias with the ReLU that follows it
// (dense::forward_relu, one pass over the GEMM's output). Results must be
// bitwise those of the layers run one by one: outputs, parameter gradients
// and input gradients.

#define BOOST_TEST_DYN_LINK
#define BOOST_TEST_MODULE models_fused_forward
#include <boost/test/unit_test.hpp>

#include <memory>
#include <vector>

#include "kernels/cpu/elementwise.hpp"
#include "models/layers/model_spec.hpp"
#include "models/layers/sequential.hpp"
#include "test_util.hpp"

using namespace troupe;
using namespace troupe::models;
using namespace troupe::models::test;

namespace {

/// The layers of `spec` run one at a time, as sequential did before fusing.
struct unfused {
  std::vector<std::unique_ptr<layer>> layers;

  tensor forward(tensor h, const forward_context& ctx) {
    for (auto& l : layers)
      h = l->forward(h, ctx);
    return h;
  }
  tensor backward(tensor g, micro_batch_id mb) {
    for (std::size_t i = layers.size(); i-- > 0;)
      g = layers[i]->backward(g, mb, true);
    return g;
  }
};

} // namespace

BOOST_AUTO_TEST_CASE(bias_relu_kernel_is_bitwise_bias_then_relu) {
  const std::int64_t rows = 7, cols = 37; // not a multiple of the vector width
  auto y = random_tensor({rows, cols}, 1, -2.f, 2.f);
  auto bias = random_tensor({cols}, 2);
  auto fused = y.clone();
  kernels::cpu::add_bias_relu_rows(fused.mutable_data<float>(), bias.data<float>(), rows, cols);
  auto apart = y.clone();
  kernels::cpu::add_bias_rows(apart.mutable_data<float>(), bias.data<float>(), rows, cols);
  auto relued = tensor::empty(runtime::dtype::f32, apart.shape());
  kernels::cpu::relu_forward(apart.data<float>(), relued.mutable_data<float>(), apart.numel());
  BOOST_TEST(runtime::bitwise_equal(fused, relued));
}

BOOST_AUTO_TEST_CASE(fused_mlp_is_bitwise_the_layer_by_layer_one) {
  auto spec = odd_widths_mlp("fused");
  sequential net(spec, 0, spec.layers.size(), 11);
  unfused ref{instantiate(spec, 0, spec.layers.size(), 11)};
  forward_context ctx;
  ctx.training = true;
  ctx.mb = 3;
  auto x = random_tensor({9, 33}, 5);

  auto y = net.forward(x, ctx);
  auto want_y = ref.forward(x, ctx);
  BOOST_TEST(runtime::bitwise_equal(y, want_y));

  auto dy = random_tensor(y.shape(), 6);
  net.zero_grad();
  for (auto& l : ref.layers)
    for (auto& p : l->parameters())
      p.grad_fresh = true;
  auto dx = net.backward(dy, ctx.mb, true);
  auto want_dx = ref.backward(dy, ctx.mb);
  BOOST_TEST(runtime::bitwise_equal(dx, want_dx));
  BOOST_TEST(net.saved_bytes() == 0u); // the relu's kept output was taken by backward

  auto got = net.parameters();
  std::vector<parameter*> want;
  for (auto& l : ref.layers)
    for (auto& p : l->parameters())
      want.push_back(&p);
  BOOST_TEST_REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < got.size(); ++i)
    BOOST_TEST(runtime::bitwise_equal(got[i]->grad, want[i]->grad), got[i]->name);
}

BOOST_AUTO_TEST_CASE(eval_forward_keeps_nothing) {
  auto spec = model_builder("fused").input({8}).dense(8, 4).relu().build();
  sequential net(spec, 0, spec.layers.size(), 1);
  forward_context ctx;
  ctx.training = false;
  net.forward(random_tensor({2, 8}, 9), ctx);
  BOOST_TEST(net.saved_bytes() == 0u);
}
