// One training step at a time of the zoo MLP (784-1024-512-10) on a random
// batch, using the troupe library directly (no actors): forward, softmax
// cross-entropy, backward, Adam. Prints the loss of each step.

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <vector>

#include "models/train/loss.hpp"
#include "models/layers/model_spec.hpp"
#include "models/train/optimizer.hpp"
#include "models/layers/sequential.hpp"
#include "models/zoo.hpp"

using namespace troupe;

int main() {
  constexpr std::int64_t batch = 64;
  constexpr std::uint64_t seed = 42;

  // The model: its spec (what it is), then all of its layers, initialised from the seed.
  models::model_spec spec = models::zoo_model("mlp");
  models::sequential net(models::instantiate(spec, 0, spec.layers.size(), seed));
  models::adam opt(kernels::cpu::adam_options{.lr = 1e-3f});
  std::printf("model %s: %zu layers, %lld parameters\n", spec.name.c_str(), net.size(),
              static_cast<long long>(net.parameter_count()));

  // A random batch: inputs [64, 784] in [0, 1), labels [64] in [0, 10).
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> pixel(0.f, 1.f);
  std::uniform_int_distribution<std::int32_t> digit(0, 9);
  std::vector<float> x(batch * 784);
  std::vector<std::int32_t> y(batch);
  for (auto& v : x) v = pixel(gen);
  for (auto& v : y) v = digit(gen);
  auto inputs = runtime::tensor::from_vector<float>({batch, 784}, x);
  auto labels = runtime::tensor::from_vector<std::int32_t>({batch}, y);

  double first = 0, last = 0;
  for (int step = 0; step < 3; ++step) {
    models::forward_context ctx;
    ctx.step = step;
    ctx.seed = seed;
    net.zero_grad();
    runtime::tensor logits = net.forward(inputs, ctx);
    models::loss_output out =
        models::softmax_cross_entropy(logits, labels, 1.f / batch, /*want_grad=*/true);
    net.backward(out.dlogits, ctx.mb, /*need_input_grad=*/false);
    auto params = net.parameters();
    opt.step(params, opt.lr());

    last = out.loss_sum / batch;
    if (step == 0) first = last;
    std::printf("step %d: loss %.4f, accuracy %lld/%lld\n", step, last,
                static_cast<long long>(out.correct), static_cast<long long>(batch));
  }
  if (!std::isfinite(last) || !(last < first)) {
    std::printf("unexpected: the loss did not go down\n");
    return 1;
  }
  return 0;
}
