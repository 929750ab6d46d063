// Data parallelism's gradient buckets: the backward writes each gradient
// straight into its range of the step's bucket buffer (stage(): in-place
// views), so handing the bucket to the all-reduce copies nothing; once handed
// over, the gradients are ordinary views again (a write copies), and the next
// stage() gives a fresh buffer.

#define BOOST_TEST_DYN_LINK
#define BOOST_TEST_MODULE actors_gradient_buckets
#include <boost/test/unit_test.hpp>

#include <cstdint>
#include <vector>

#include "actors/pipeline/gradient_buckets.hpp"
#include "models/layers/model_spec.hpp"
#include "models/layers/sequential.hpp"
#include "runtime/tensor.hpp"

using namespace troupe;
using runtime::tensor;

namespace {

models::model_spec small_mlp() {
  return models::model_builder("buckets").input({6}).dense(6, 5).relu().dense(5, 3).build();
}

tensor ramp(runtime::shape_t shape, float scale) {
  auto t = tensor::empty(runtime::dtype::f32, std::move(shape));
  auto* p = t.mutable_data<float>();
  for (std::int64_t i = 0; i < t.numel(); ++i)
    p[i] = scale * static_cast<float>((i * 7) % 11 - 5);
  return t;
}

/// One forward and backward of a fixed batch through `net`.
void backward_once(models::sequential& net) {
  models::forward_context ctx;
  ctx.training = true;
  ctx.mb = 0;
  auto y = net.forward(ramp({4, 6}, 0.1f), ctx);
  net.backward(ramp(y.shape(), 0.01f), 0, false);
}

} // namespace

BOOST_AUTO_TEST_CASE(backward_writes_into_the_bucket_and_flatten_hands_it_over) {
  auto spec = small_mlp();
  std::vector<models::sequential> chunks;
  chunks.emplace_back(spec, 0, spec.layers.size(), 3);
  models::sequential ref(spec, 0, spec.layers.size(), 3);
  actors::gradient_buckets gb;
  gb.cut(chunks, 0); // one bucket: 2.bias, 2.weight, 0.bias, 0.weight (backward's order)
  BOOST_TEST_REQUIRE(gb.buckets.size() == 1u);
  const auto& bucket = gb.buckets[0];
  const tensor staged = gb.staged[0];
  BOOST_TEST_REQUIRE(staged.numel() == bucket.numel);

  backward_once(chunks[0]);
  backward_once(ref);
  for (auto* p : bucket.params) {
    BOOST_TEST(p->grad.shares_storage_with(staged), p->name); // written in place
    BOOST_TEST(p->grad.writes_in_place(), p->name);
  }

  auto flat = actors::flatten(bucket, staged);
  BOOST_TEST(flat.shares_storage_with(staged)); // no copy
  BOOST_TEST(flat.storage_offset() == staged.storage_offset());
  std::int64_t offset = 0;
  for (auto* p : bucket.params) {
    // The same gradients as a backward that writes its own buffers.
    auto want = ref.find_parameter(p->name)->grad;
    BOOST_TEST(runtime::bitwise_equal(flat.view(offset, p->value.shape()), want), p->name);
    offset += p->value.numel();
  }

  gb.hand_over(0);
  BOOST_TEST(!gb.staged[0].defined());
  auto* w = bucket.params.back();
  BOOST_TEST(!w->grad.writes_in_place());
  BOOST_TEST(w->grad.shares_storage_with(flat)); // still reads the same bytes
  const float before = flat.data<float>()[bucket.numel - 1];
  w->grad.mutable_data<float>()[w->value.numel() - 1] = before + 1.f; // copies now
  BOOST_TEST(flat.data<float>()[bucket.numel - 1] == before);

  gb.stage(); // the next step: a fresh buffer, fresh gradients
  BOOST_TEST(!gb.staged[0].shares_storage_with(flat));
  for (auto* p : bucket.params) {
    BOOST_TEST(p->grad_fresh, p->name);
    BOOST_TEST(p->grad.shares_storage_with(gb.staged[0]), p->name);
  }
}

BOOST_AUTO_TEST_CASE(a_parameter_without_a_gradient_is_handed_over_as_zeros) {
  auto spec = small_mlp();
  std::vector<models::sequential> chunks;
  chunks.emplace_back(spec, 0, spec.layers.size(), 3);
  actors::gradient_buckets gb;
  gb.cut(chunks, 0);
  auto flat = actors::flatten(gb.buckets[0], gb.staged[0]); // no backward ran: a replica without samples
  BOOST_TEST(flat.shares_storage_with(gb.staged[0]));
  for (float v : flat.values<float>())
    BOOST_TEST(v == 0.f);
}
