#define BOOST_TEST_DYN_LINK
#define BOOST_TEST_MODULE io_tensor_view
#include <boost/test/unit_test.hpp>

// Tensor views (runtime/tensor.hpp): a range of a shared storage, sliced in
// O(1), copied on write by its range only, serialised as its bytes only.

#include <cstdint>
#include <stdexcept>
#include <vector>

#include <caf/binary_deserializer.hpp>
#include <caf/binary_serializer.hpp>

#include "runtime/net/tensor_inspect.hpp"
#include "runtime/tensor.hpp"

using namespace troupe::runtime;

namespace {

/// 0, 1, 2, ... as f32 of `shape`.
tensor iota(shape_t shape) {
  auto t = tensor::empty(dtype::f32, std::move(shape));
  auto* p = t.mutable_data<float>();
  for (std::int64_t i = 0; i < t.numel(); ++i)
    p[i] = static_cast<float>(i);
  return t;
}

std::vector<char> serialize(const tensor& t) {
  std::vector<char> buf;
  caf::binary_serializer sink{nullptr, buf};
  auto copy = t;
  BOOST_REQUIRE(!sink(copy));
  return buf;
}

} // namespace

BOOST_AUTO_TEST_CASE(a_slice_is_a_range_of_the_same_storage) {
  auto base = iota({4, 6});
  auto v = base.slice(7, 10);
  BOOST_TEST(v.shares_storage_with(base));
  BOOST_TEST(v.storage_offset() == 7);
  BOOST_TEST(v.numel() == 10);
  BOOST_TEST(v.nbytes() == 40u);
  BOOST_TEST((v.shape() == shape_t{10}));
  BOOST_TEST(v.raw_data() == static_cast<const void*>(base.data<float>() + 7));
  BOOST_TEST(v.values<float>()[0] == 7.f);
  BOOST_TEST(v.values<float>()[9] == 16.f);
  // A shaped view and its reshape keep the offset.
  auto rows = base.view(12, {2, 6});
  BOOST_TEST(rows.data<float>()[0] == 12.f);
  BOOST_TEST(rows.reshape({12}).data<float>()[11] == 23.f);
  // The whole range and an empty one at the end are fine; beyond is not.
  BOOST_TEST(base.slice(0, 24).storage_offset() == 0);
  BOOST_TEST(base.slice(24, 0).numel() == 0);
  BOOST_CHECK_THROW(base.slice(20, 5), std::out_of_range);
  BOOST_CHECK_THROW(base.slice(-1, 2), std::out_of_range);
  BOOST_CHECK_THROW(base.slice(25, 0), std::out_of_range);
  BOOST_CHECK_THROW(tensor{}.slice(0, 0), std::logic_error);
}

BOOST_AUTO_TEST_CASE(a_view_of_a_view_adds_the_offsets_and_stays_inside_its_parent) {
  auto base = iota({100});
  auto outer = base.slice(30, 40);
  auto inner = outer.slice(5, 10);
  BOOST_TEST(inner.shares_storage_with(base));
  BOOST_TEST(inner.storage_offset() == 35);
  BOOST_TEST(inner.values<float>()[0] == 35.f);
  BOOST_TEST(inner.values<float>()[9] == 44.f);
  // Bounds are the parent view's, not the storage's.
  BOOST_CHECK_THROW(outer.slice(35, 10), std::out_of_range);
}

BOOST_AUTO_TEST_CASE(writing_a_shared_view_copies_only_its_range) {
  auto base = iota({1 << 18}); // 1 MiB
  auto v = base.slice(1000, 16);
  BOOST_TEST(!v.is_unique());
  float* w = v.mutable_data<float>();
  w[0] = -1.f;
  // The view got a storage of its own, of its 16 elements only.
  BOOST_TEST(!v.shares_storage_with(base));
  BOOST_TEST(v.storage_nbytes() == 64u);
  BOOST_TEST(v.storage_offset() == 0);
  BOOST_TEST(v.is_unique());
  BOOST_TEST(v.values<float>()[0] == -1.f);
  BOOST_TEST(v.values<float>()[15] == 1015.f);    // the rest of its range came along
  BOOST_TEST(base.data<float>()[1000] == 1000.f); // the reader's bytes did not change
  BOOST_TEST(base.is_unique());
}

BOOST_AUTO_TEST_CASE(writing_a_view_that_owns_its_storage_alone_writes_in_place) {
  auto v = iota({64}).slice(8, 8); // the base tensor is gone
  BOOST_TEST(v.is_unique());
  const void* before = v.raw_data();
  v.mutable_data<float>()[0] = 42.f;
  BOOST_TEST(v.raw_data() == before);
  BOOST_TEST(v.storage_offset() == 8);
  BOOST_TEST(v.data<float>()[0] == 42.f);
}

BOOST_AUTO_TEST_CASE(an_in_place_view_writes_the_shared_storage) {
  auto base = iota({32});
  auto v = base.in_place_view(8, {2, 4});
  BOOST_TEST(v.writes_in_place());
  BOOST_TEST(!v.is_unique());
  auto copy = v; // copies keep the mark (a parameter's gradient moved around)
  BOOST_TEST(copy.writes_in_place());
  v.mutable_data<float>()[1] = -9.f;
  // No copy on write: the owner of the buffer sees the write.
  BOOST_TEST(v.shares_storage_with(base));
  BOOST_TEST(v.storage_offset() == 8);
  BOOST_TEST(base.data<float>()[9] == -9.f);
  // What is derived from it is an ordinary view again.
  BOOST_TEST(!v.slice(0, 2).writes_in_place());
  BOOST_TEST(!v.reshape({8}).writes_in_place());
  BOOST_TEST(!v.clone().writes_in_place());
  auto plain = base.view(8, {2, 4});
  plain.mutable_data<float>()[0] = 7.f;
  BOOST_TEST(!plain.shares_storage_with(base));
  BOOST_TEST(base.data<float>()[8] == 8.f);
}

BOOST_AUTO_TEST_CASE(writing_the_base_leaves_a_view_reading_the_old_bytes) {
  auto base = iota({32});
  auto v = base.slice(4, 4);
  base.mutable_data<float>()[5] = 99.f;
  BOOST_TEST(v.data<float>()[1] == 5.f);
  BOOST_TEST(base.data<float>()[5] == 99.f);
}

BOOST_AUTO_TEST_CASE(clone_of_a_view_is_compact) {
  auto base = iota({50});
  auto c = base.view(10, {2, 3}).clone();
  BOOST_TEST(c.storage_nbytes() == 24u);
  BOOST_TEST(c.storage_offset() == 0);
  BOOST_TEST(c.data<float>()[5] == 15.f);
}

BOOST_AUTO_TEST_CASE(a_view_serialises_as_its_bytes_and_comes_back_compact) {
  auto base = iota({1000});
  auto v = base.view(300, {5, 4});
  auto wire = serialize(v);
  auto compact = v.clone();
  // Exactly what a compact tensor of the same shape writes: the view's 80
  // bytes, not the storage's 4,000.
  BOOST_TEST(wire == serialize(compact));
  BOOST_TEST(wire.size() < 200u);
  tensor back;
  caf::binary_deserializer source{nullptr, wire};
  BOOST_REQUIRE(!source(back));
  BOOST_TEST(bitwise_equal(back, v));
  BOOST_TEST((back.shape() == shape_t{5, 4}));
  BOOST_TEST(back.storage_offset() == 0);
  BOOST_TEST(back.storage_nbytes() == 80u);
  BOOST_TEST(back.data<float>()[0] == 300.f);
  BOOST_TEST(back.data<float>()[19] == 319.f);
}
