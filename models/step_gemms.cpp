#include "models/step_gemms.hpp"

#include <algorithm>
#include <chrono>
#include <stdexcept>

#include "kernels/cpu/gemm.hpp"
#include "runtime/rng.hpp"

namespace troupe::models {

double step_gemms::flops() const {
  double f = 0;
  for (const auto& c : calls)
    f += c.flops();
  return f;
}

step_gemms training_gemms(const model_spec& spec, std::int64_t microbatch,
                          std::int64_t microbatches) {
  if (microbatch < 1 || microbatches < 1)
    throw std::invalid_argument("training_gemms: microbatch and microbatches must be >= 1");
  const auto shapes = activation_shapes(spec); // validates
  step_gemms g;
  for (std::int64_t mb = 0; mb < microbatches; ++mb)
    for (std::size_t i = 0; i < spec.layers.size(); ++i) {
      const auto& l = spec.layers[i];
      const auto type = l.at("type").get<std::string>();
      const auto name = type + " layer " + std::to_string(i);
      if (type == "conv2d" || type == "causal_self_attention" || type == "transformer_block") {
        if (mb == 0)
          g.uncounted.push_back(name);
        continue;
      }
      if (type != "dense")
        continue;
      const auto in = l.at("in").get<std::int64_t>();
      const auto out = l.at("out").get<std::int64_t>();
      const std::int64_t rows = microbatch * runtime::shape_numel(shapes[i]) / in;
      g.calls.push_back({name + " forward", false, true, rows, out, in, false});
      g.calls.push_back({name + " weight gradient", true, false, out, in, rows, mb > 0});
      if (i > 0)
        g.calls.push_back({name + " input gradient", false, false, rows, in, out, false});
    }
  return g;
}

namespace {

std::vector<float> random_floats(std::int64_t n, runtime::rng_stream& rng) {
  std::vector<float> v(static_cast<std::size_t>(n));
  for (auto& x : v)
    x = rng.next_uniform(-1.0f, 1.0f);
  return v;
}

} // namespace

std::vector<double> time_gemms(const std::vector<gemm_call>& calls, int reps) {
  if (reps < 1)
    throw std::invalid_argument("time_gemms: reps must be >= 1");
  namespace kc = kernels::cpu;
  runtime::rng_stream rng{0, runtime::hash_name("step gemms")};
  std::vector<double> medians;
  for (const auto& g : calls) {
    auto a = random_floats(g.m * g.k, rng);
    auto b = random_floats(g.k * g.n, rng);
    auto c = random_floats(g.m * g.n, rng);
    std::vector<double> times;
    for (int r = 0; r <= reps; ++r) { // run 0 warms caches and BLAS buffers up
      const auto t0 = std::chrono::steady_clock::now();
      // Row-major leading dimensions of op(A) m x k and op(B) k x n as stored.
      kc::gemm(g.trans_a ? kc::trans::yes : kc::trans::no,
               g.trans_b ? kc::trans::yes : kc::trans::no, g.m, g.n, g.k, 1.0f, a.data(),
               g.trans_a ? g.m : g.k, b.data(), g.trans_b ? g.k : g.n, g.accumulate ? 1.0f : 0.0f,
               c.data(), g.n);
      if (r > 0)
        times.push_back(
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(times.begin(), times.end());
    medians.push_back(times[times.size() / 2]);
  }
  return medians;
}

} // namespace troupe::models
