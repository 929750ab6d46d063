// Training on a data set generated in code, through the library: a
// dataset_source of one's own (here every sample is computed from its index
// when a loader asks for it, nothing stored) handed to run_training. Any
// source works the same way: a database, a stream of files, a simulator.
//
// The task: 28 x 28 "images" of noise with one bright horizontal band whose
// position (one of 10) is the label, trained on the zoo MLP for one epoch;
// the held-out set is a second generated source. Usage: own_dataset

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <span>
#include <utility>

#include <caf/actor_system.hpp>

#include "actors/cluster/job.hpp"
#include "actors/pipeline/dataset.hpp"
#include "actors/protocol/system_config.hpp"

using namespace troupe;

namespace {

/// `count` samples from `seed`: sample i has label i % 10 and is computed
/// from (seed, i) alone, so reads are concurrent-safe and repeatable.
class banded_images final : public actors::dataset_source {
public:
  banded_images(std::int64_t count, std::uint32_t seed) : count_(count), seed_(seed) {}
  std::int64_t size() const override { return count_; }
  runtime::shape_t sample_shape() const override { return {28, 28}; }
  runtime::dtype sample_dtype() const override { return runtime::dtype::f32; }
  runtime::shape_t target_shape() const override { return {}; } // one label
  runtime::dtype target_dtype() const override { return runtime::dtype::i32; }

  std::pair<runtime::tensor, runtime::tensor>
  read(std::span<const std::int32_t> indices) const override {
    const auto n = static_cast<std::int64_t>(indices.size());
    auto x = runtime::tensor::empty(runtime::dtype::f32, {n, 28, 28});
    auto y = runtime::tensor::empty(runtime::dtype::i32, {n});
    auto* px = x.mutable_data<float>();
    for (std::int64_t s = 0; s < n; ++s) {
      const std::uint32_t i = static_cast<std::uint32_t>(indices[static_cast<std::size_t>(s)]);
      const int label = static_cast<int>(i % 10);
      std::uint32_t state = (i + 1) * 2654435761u ^ seed_;
      for (int p = 0; p < 28 * 28; ++p) {
        state = state * 1664525u + 1013904223u; // a small LCG: noise in [0, 0.5)
        const float noise = static_cast<float>(state >> 8) / float(1u << 24) * 0.5f;
        const int row = p / 28;
        px[s * 784 + p] = noise + (row / 3 == label ? 0.5f : 0.f);
      }
      y.mutable_data<std::int32_t>()[s] = label;
    }
    return {std::move(x), std::move(y)};
  }

private:
  std::int64_t count_;
  std::uint32_t seed_;
};

} // namespace

int main() try {
  actors::train_options opts;
  opts.model = "mlp"; // 784 inputs, 10 classes
  opts.epochs = 1;
  opts.batch = 32;
  opts.progress = false;
  opts.threads = 2;
  actors::dataset train{"banded/train", std::make_shared<banded_images>(2000, 1)};
  actors::dataset test{"banded/test", std::make_shared<banded_images>(500, 2)};

  actors::system_config cfg;
  caf::actor_system sys{cfg};
  auto result = actors::run_training(sys, opts, train, test);
  const double accuracy = result.report.at("test_accuracy").get<double>();
  std::printf("own data set: %lld steps, final loss %.4f, test accuracy %.2f%%\n",
              static_cast<long long>(result.report.at("steps").get<std::int64_t>()),
              result.report.at("final_loss").get<double>(), 100.0 * accuracy);
  return accuracy > 0.9 ? 0 : 1; // the band is plain to see: near 100%
} catch (const std::exception& e) {
  std::fprintf(stderr, "error: %s\n", e.what());
  return 2;
}
