#define BOOST_TEST_DYN_LINK
#define BOOST_TEST_MODULE transport_frame
#include <boost/test/unit_test.hpp>

#include <cstring>
#include <limits>
#include <string>

#include "runtime/error.hpp"
#include "runtime/net/transport/frame.hpp"

using namespace troupe::runtime;
using namespace troupe::runtime::transport;

namespace {

frame_limits limits{1 << 20};

encoded_frame_header valid(shape_t shape = {2, 3}, dtype t = dtype::f32) {
  frame_header h;
  h.kind = frame_kind::tensor;
  h.sender_id = 7;
  h.stream_id = 9;
  h.transfer_id = 0x0123456789abcdefULL;
  h.tensor.type = t;
  h.tensor.shape = shape;
  h.tensor.payload_bytes = static_cast<std::uint64_t>(shape_numel(shape)) * element_size(t);
  return encode_frame_header(h);
}

template <class T>
void poke(encoded_frame_header& b, std::size_t off, T v) {
  std::memcpy(b.data() + off, &v, sizeof v); // test host is little-endian
}

void expect_reject(const encoded_frame_header& b, const std::string& needle) {
  try {
    decode_frame_header(b, limits);
    BOOST_FAIL("accepted a frame that violates: " + needle);
  } catch (const input_error& e) {
    BOOST_TEST_INFO("message: " << e.what());
    BOOST_TEST(std::string{e.what()}.find(needle) != std::string::npos);
  }
}

} // namespace

BOOST_AUTO_TEST_CASE(round_trip_of_tensor_headers) {
  for (auto t : {dtype::f32, dtype::f64, dtype::i32, dtype::i64, dtype::u8})
    for (shape_t s : {shape_t{}, shape_t{0}, shape_t{5}, shape_t{2, 3}, shape_t{1, 1, 1, 1, 1, 1, 1, 4}}) {
      auto b = valid(s, t);
      auto h = decode_frame_header(b, limits);
      BOOST_TEST((h.kind == frame_kind::tensor));
      BOOST_TEST(h.sender_id == 7u);
      BOOST_TEST(h.stream_id == 9u);
      BOOST_TEST(h.transfer_id == 0x0123456789abcdefULL);
      BOOST_TEST((h.tensor.type == t));
      BOOST_TEST(h.tensor.shape == s);
      BOOST_TEST(h.tensor.where.is_cpu());
      BOOST_TEST(h.payload_bytes() == shape_numel(s) * element_size(t));
    }
}

BOOST_AUTO_TEST_CASE(tensor_frame_header_describes_the_tensor) {
  auto t = tensor::from_vector<double>({3}, {1, 2, 3});
  auto h = decode_frame_header(encode_frame_header(tensor_frame_header(42, t, 1, 2)), limits);
  BOOST_TEST(h.transfer_id == 42u);
  BOOST_TEST(h.payload_bytes() == 24u);
  BOOST_TEST((h.tensor.type == dtype::f64));
  BOOST_CHECK_THROW(tensor_frame_header(1, tensor{}), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(close_frame_round_trip) {
  frame_header h;
  h.kind = frame_kind::close;
  h.transfer_id = 5;
  auto d = decode_frame_header(encode_frame_header(h), limits);
  BOOST_TEST((d.kind == frame_kind::close));
  BOOST_TEST(d.payload_bytes() == 0u);
}

BOOST_AUTO_TEST_CASE(encoder_refuses_undecodable_headers) {
  frame_header h;
  h.tensor.shape = shape_t(9, 1);
  BOOST_CHECK_THROW(encode_frame_header(h), std::invalid_argument);
  frame_header k;
  k.kind = static_cast<frame_kind>(77);
  BOOST_CHECK_THROW(encode_frame_header(k), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(truncated_headers_are_rejected) {
  auto b = valid();
  for (std::size_t n = 0; n < frame_header_size; ++n)
    BOOST_CHECK_THROW(decode_frame_header(std::span{b}.first(n), limits), input_error);
  try {
    decode_frame_header(std::span{b}.first(10), limits);
  } catch (const input_error& e) {
    BOOST_TEST(std::string{e.what()}.find("truncated") != std::string::npos);
  }
}

BOOST_AUTO_TEST_CASE(every_malformed_field_is_rejected) {
  auto b = valid();
  poke<std::uint32_t>(b, 0, 0xdeadbeef);
  expect_reject(b, "magic");
  b = valid();
  poke<std::uint16_t>(b, 4, 2);
  expect_reject(b, "version");
  b = valid();
  poke<std::uint16_t>(b, 4, 0);
  expect_reject(b, "version");
  for (std::uint8_t k : {0, 3, 255}) {
    b = valid();
    poke<std::uint8_t>(b, 6, k);
    expect_reject(b, "kind");
  }
  b = valid();
  poke<std::uint8_t>(b, 7, 1);
  expect_reject(b, "flags");
  b = valid();
  poke<std::uint8_t>(b, 30, 1);
  expect_reject(b, "reserved");
  b = valid();
  poke<std::uint8_t>(b, 24, 5);
  expect_reject(b, "dtype");
  b = valid();
  poke<std::uint8_t>(b, 25, 1);
  expect_reject(b, "CPU");
  b = valid();
  poke<std::int16_t>(b, 26, 3);
  expect_reject(b, "CPU");
  b = valid();
  poke<std::uint8_t>(b, 28, 9);
  expect_reject(b, "rank");
  b = valid();
  poke<std::int64_t>(b, 32 + 8 * 5, 1); // extent beyond rank 2
  expect_reject(b, "beyond rank");
  b = valid();
  poke<std::int64_t>(b, 32, -2);
  poke<std::uint64_t>(b, 96, 0);
  expect_reject(b, "negative");
  b = valid();
  poke<std::int64_t>(b, 32, 3); // 3x3 f32 = 36 bytes, header says 24
  expect_reject(b, "needs");
  b = valid({4}, dtype::u8);
  poke<std::int64_t>(b, 32, std::numeric_limits<std::int64_t>::max());
  poke<std::uint8_t>(b, 28, 2);
  poke<std::int64_t>(b, 40, std::numeric_limits<std::int64_t>::max());
  expect_reject(b, "overflows");
}

BOOST_AUTO_TEST_CASE(oversized_payloads_are_rejected_before_anything_else) {
  auto b = valid({1 << 20}, dtype::f32); // 4 MiB > 1 MiB cap
  expect_reject(b, "exceeds the limit");
  b = valid();
  poke<std::uint64_t>(b, 96, std::numeric_limits<std::uint64_t>::max());
  expect_reject(b, "exceeds the limit");
  // A payload exactly at the cap is fine.
  auto ok = valid({1 << 18}, dtype::f32);
  BOOST_TEST(decode_frame_header(ok, limits).payload_bytes() == (1u << 20));
}

BOOST_AUTO_TEST_CASE(close_frames_carry_nothing) {
  frame_header h;
  h.kind = frame_kind::close;
  auto b = encode_frame_header(h);
  poke<std::uint64_t>(b, 96, 4);
  expect_reject(b, "close frame");
  b = encode_frame_header(h);
  poke<std::uint8_t>(b, 28, 1);
  expect_reject(b, "close frame");
}
