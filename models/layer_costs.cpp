#include "models/layer_costs.hpp"

#include <algorithm>
#include <chrono>
#include <stdexcept>

#include "models/layers/init.hpp"
#include "runtime/rng.hpp"

namespace troupe::models {

namespace {

using clock_type = std::chrono::steady_clock;

/// A tensor of `shape` with values in [-1, 1), or token ids in [0, vocab).
runtime::tensor random_input(runtime::dtype type, const shape_t& shape, std::int64_t vocab,
                             runtime::rng_stream& rng) {
  auto t = runtime::tensor::empty(type, shape);
  if (type == runtime::dtype::i32) {
    auto* d = t.mutable_data<std::int32_t>();
    for (std::int64_t i = 0; i < t.numel(); ++i)
      d[i] = static_cast<std::int32_t>(rng.next_below(static_cast<std::uint64_t>(vocab)));
  } else {
    auto* d = t.mutable_data<float>();
    for (std::int64_t i = 0; i < t.numel(); ++i)
      d[i] = rng.next_uniform(-1.0f, 1.0f);
  }
  return t;
}

} // namespace

std::vector<double> measure_layer_costs(const model_spec& spec, std::int64_t microbatch,
                                        std::uint64_t seed, int reps) {
  if (microbatch < 1 || reps < 1)
    throw std::invalid_argument("measure_layer_costs: microbatch and reps must be >= 1");
  auto layers = instantiate(spec, 0, spec.layers.size(), seed);
  runtime::rng_stream rng{seed, runtime::hash_name("layer costs")};
  const auto out = output_shape(spec);
  shape_t shape{microbatch};
  shape.insert(shape.end(), spec.input_shape.begin(), spec.input_shape.end());
  auto x = random_input(spec.input_dtype, shape, out.back(), rng);
  std::vector<double> costs;
  forward_context ctx;
  ctx.seed = seed;
  for (std::size_t l = 0; l < layers.size(); ++l) {
    auto& layer = *layers[l];
    std::vector<double> times;
    runtime::tensor y;
    for (int r = 0; r <= reps; ++r) { // run 0 warms caches and allocators up
      ctx.mb = r;
      const auto t0 = clock_type::now();
      y = layer.forward(x, ctx);
      const auto forward = clock_type::now() - t0;
      auto dy = random_input(runtime::dtype::f32, y.shape(), 0, rng);
      const auto t1 = clock_type::now();
      layer.backward(dy, r, l > 0);
      const auto backward = clock_type::now() - t1;
      if (r > 0)
        times.push_back(std::chrono::duration<double>(forward + backward).count());
      for (auto& p : layer.parameters())
        p.grad_fresh = true;
    }
    std::nth_element(times.begin(), times.begin() + static_cast<std::ptrdiff_t>(times.size() / 2),
                     times.end());
    costs.push_back(times[times.size() / 2]);
    x = std::move(y); // the next layer's input
  }
  return costs;
}

std::vector<double> measure_layer_speed(const model_spec& spec, std::int64_t microbatch,
                                        std::uint64_t seed, double min_seconds) {
  if (microbatch < 1)
    throw std::invalid_argument("measure_layer_speed: microbatch must be >= 1");
  auto layers = instantiate(spec, 0, spec.layers.size(), seed);
  runtime::rng_stream rng{seed, runtime::hash_name("layer speed")};
  shape_t shape{microbatch};
  shape.insert(shape.end(), spec.input_shape.begin(), spec.input_shape.end());
  const auto x0 = random_input(spec.input_dtype, shape, output_shape(spec).back(), rng);
  std::vector<double> sums(layers.size(), 0.0);
  std::vector<runtime::tensor> grads; // each layer's output gradient
  forward_context ctx;
  ctx.seed = seed;
  const auto started = clock_type::now();
  auto timed_from = started; // the end of the warm-up pass
  int passes = 0;
  for (int pass = 0;; ++pass) {
    const auto now = clock_type::now();
    if (pass == 1)
      timed_from = now;
    if (pass > 3 && std::chrono::duration<double>(now - started).count() >= min_seconds)
      break;
    auto x = x0;
    ctx.mb = pass;
    std::vector<runtime::tensor> outputs;
    for (std::size_t l = 0; l < layers.size(); ++l) { // forwards, in order
      const auto t0 = clock_type::now();
      x = layers[l]->forward(x, ctx);
      if (pass > 0)
        sums[l] += std::chrono::duration<double>(clock_type::now() - t0).count();
      outputs.push_back(x);
    }
    if (pass == 0) // drawn once: the timed passes run the layers and nothing else
      for (const auto& y : outputs)
        grads.push_back(random_input(runtime::dtype::f32, y.shape(), 0, rng));
    for (std::size_t l = layers.size(); l-- > 0;) { // backwards, in reverse
      const auto t0 = clock_type::now();
      layers[l]->backward(grads[l], pass, l > 0);
      if (pass > 0)
        sums[l] += std::chrono::duration<double>(clock_type::now() - t0).count();
      for (auto& p : layers[l]->parameters())
        p.grad_fresh = true;
    }
    passes += pass > 0 ? 1 : 0;
  }
  // A quota's pause may fall outside the timed calls (between them): the
  // wall time of the timed passes is what they cost, shared out in
  // proportion to the layers' own times.
  const double wall = std::chrono::duration<double>(clock_type::now() - timed_from).count();
  double timed = 0;
  for (double s : sums)
    timed += s;
  for (double& s : sums)
    s = timed > 0 ? s / timed * wall / passes : s / passes;
  return sums;
}

} // namespace troupe::models
