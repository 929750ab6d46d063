// The loader's data set interface (actors/pipeline/dataset.hpp): a source of
// one's own through make_batch, the input transforms (x / 255 bitwise as the
// MNIST loader always computed it, per-feature standardisation), held-out
// slices, and real-valued targets for an mse loss.

#define BOOST_TEST_DYN_LINK
#define BOOST_TEST_MODULE actors_dataset
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <numeric>

#include "actors/pipeline/data_loader.hpp"
#include "actors/pipeline/dataset.hpp"
#include "runtime/error.hpp"

using namespace troupe;

namespace {

/// Sample i: features (i, 2i, 3i) as i32, target the real value i / 2.
class ramp final : public actors::dataset_source {
public:
  std::int64_t size() const override { return 10; }
  runtime::shape_t sample_shape() const override { return {3}; }
  runtime::dtype sample_dtype() const override { return runtime::dtype::i32; }
  runtime::shape_t target_shape() const override { return {}; }
  runtime::dtype target_dtype() const override { return runtime::dtype::f32; }
  std::pair<runtime::tensor, runtime::tensor>
  read(std::span<const std::int32_t> indices) const override {
    const auto n = static_cast<std::int64_t>(indices.size());
    auto x = runtime::tensor::empty(runtime::dtype::i32, {n, 3});
    auto y = runtime::tensor::empty(runtime::dtype::f32, {n});
    for (std::int64_t k = 0; k < n; ++k) {
      const auto i = indices[static_cast<std::size_t>(k)];
      for (int f = 0; f < 3; ++f)
        x.mutable_data<std::int32_t>()[k * 3 + f] = i * (f + 1);
      y.mutable_data<float>()[k] = static_cast<float>(i) / 2;
    }
    return {std::move(x), std::move(y)};
  }
};

std::vector<std::int32_t> identity(std::int64_t n) {
  std::vector<std::int32_t> order(static_cast<std::size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  return order;
}

} // namespace

BOOST_AUTO_TEST_CASE(a_source_of_ones_own_feeds_batches_with_standardized_inputs) {
  actors::loader_config cfg;
  cfg.data = {"ramp", std::make_shared<ramp>()};
  cfg.sample_shape = {3};
  cfg.input_dtype = runtime::dtype::f32; // i32 samples for an f32 model: converted
  cfg.transform = actors::standardize_per_feature(cfg.data);
  cfg.real_targets = true;
  cfg.batch = 10;
  auto b = actors::make_batch(cfg, identity(10), 0, 0);
  BOOST_REQUIRE(b.inputs.size() == 1u);
  BOOST_TEST((b.inputs[0].type() == runtime::dtype::f32));
  BOOST_TEST((b.labels[0].shape() == runtime::shape_t{10, 1}));
  BOOST_TEST(b.labels[0].data<float>()[3] == 1.5f);
  // Each feature now has mean 0 and (population) std 1 over the set.
  for (int f = 0; f < 3; ++f) {
    double sum = 0, sq = 0;
    for (int i = 0; i < 10; ++i) {
      const double v = b.inputs[0].data<float>()[i * 3 + f];
      sum += v;
      sq += v * v;
    }
    BOOST_TEST(std::abs(sum / 10) < 1e-5);
    BOOST_TEST(std::abs(sq / 10 - 1) < 1e-4);
  }
}

BOOST_AUTO_TEST_CASE(u8_divided_by_255_is_bitwise_the_mnist_loaders_x_times_one_over_255) {
  auto x = runtime::tensor::empty(runtime::dtype::u8, {256, 1});
  auto y = runtime::tensor::zeros(runtime::dtype::u8, {256});
  for (int i = 0; i < 256; ++i)
    x.mutable_data<std::uint8_t>()[i] = static_cast<std::uint8_t>(i);
  actors::loader_config cfg;
  cfg.data = actors::memory_dataset("bytes", x, y);
  cfg.sample_shape = {1};
  cfg.transform = actors::divide_by(255, "u8");
  cfg.batch = 256;
  auto b = actors::make_batch(cfg, identity(256), 0, 0);
  for (int i = 0; i < 256; ++i)
    BOOST_TEST(b.inputs[0].data<float>()[i] == static_cast<float>(i) * (1.0f / 255.0f));
  BOOST_TEST((b.labels[0].type() == runtime::dtype::i32)); // u8 labels read as i32
  BOOST_TEST(cfg.transform.description.at("formula") == "x / 255");
}

BOOST_AUTO_TEST_CASE(a_slice_reads_the_tail_and_memory_datasets_check_their_tensors) {
  actors::dataset all{"ramp", std::make_shared<ramp>()};
  auto tail = actors::slice(all, 7, 10, "ramp [holdout]");
  BOOST_TEST(tail.size() == 3);
  auto [x, y] = tail.source->read(std::vector<std::int32_t>{0, 2});
  BOOST_TEST(x.data<std::int32_t>()[0] == 7);
  BOOST_TEST(y.data<float>()[1] == 4.5f);
  BOOST_CHECK_THROW(actors::memory_dataset("bad",
                                           runtime::tensor::zeros(runtime::dtype::f32, {3, 2}),
                                           runtime::tensor::zeros(runtime::dtype::i32, {2})),
                    runtime::input_error);
}
