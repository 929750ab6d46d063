#define BOOST_TEST_DYN_LINK
#define BOOST_TEST_MODULE io_safetensors
#include <boost/test/unit_test.hpp>

#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "runtime/error.hpp"
#include "runtime/io/file_util.hpp"
#include "runtime/io/safetensors.hpp"
#include "temp_dir.hpp"

using namespace troupe::runtime;
using troupe::test::message_has;
using troupe::test::temp_dir;

namespace {

using named = std::vector<std::pair<std::string, tensor>>;

named sample_tensors() {
  named t;
  t.emplace_back("w.f32", tensor::from_vector<float>({2, 3}, {1.5f, -2, 3, 4, 5, 6.25f}));
  t.emplace_back("a.f64", tensor::from_vector<double>({3}, {1e300, -0.0, 3.5}));
  t.emplace_back("c.i32", tensor::from_vector<std::int32_t>({2, 2}, {-1, 2, -3, 4}));
  t.emplace_back("b.i64", tensor::from_vector<std::int64_t>(
                              {2}, {std::numeric_limits<std::int64_t>::min(), 42}));
  t.emplace_back("d.u8", tensor::from_vector<std::uint8_t>({1, 1, 4}, {0, 1, 128, 255}));
  t.emplace_back("empty", tensor::empty(dtype::f32, {0}));
  t.emplace_back("empty2d", tensor::empty(dtype::i64, {3, 0}));
  t.emplace_back("scalar", tensor::from_vector<float>({}, {7.0f}));
  return t;
}

void check_same(const named& expected, const safetensors_file& got) {
  BOOST_REQUIRE_EQUAL(got.tensors.size(), expected.size());
  for (std::size_t i = 1; i < got.tensors.size(); ++i)
    BOOST_TEST((got.tensors[i - 1].first < got.tensors[i].first)); // sorted by name
  for (const auto& [name, t] : expected) {
    BOOST_TEST_CONTEXT("tensor " << name) {
      BOOST_TEST(bitwise_equal(got.at(name), t));
      BOOST_TEST(to_string(got.at(name).shape()) == to_string(t.shape()));
    }
  }
}

/// A file image from a header text and a data buffer of `data_size` bytes.
std::vector<std::byte> image(const std::string& header, std::size_t data_size,
                             std::uint64_t header_len = std::numeric_limits<std::uint64_t>::max()) {
  if (header_len == std::numeric_limits<std::uint64_t>::max())
    header_len = header.size();
  std::vector<std::byte> out(8);
  std::memcpy(out.data(), &header_len, 8);
  for (char c : header)
    out.push_back(static_cast<std::byte>(c));
  for (std::size_t i = 0; i < data_size; ++i)
    out.push_back(static_cast<std::byte>(i));
  return out;
}

auto parse(const std::vector<std::byte>& b) {
  return parse_safetensors(b, "test.safetensors");
}

} // namespace

BOOST_AUTO_TEST_CASE(round_trip_all_dtypes_empty_and_metadata) {
  temp_dir dir;
  auto t = sample_tensors();
  std::map<std::string, std::string> meta{
      {"format", "pt"}, {"step", "12"}, {"note", "\"q\" \xc3\xa9"}};
  auto p = dir / "model.safetensors";
  write_safetensors(p, t, meta);
  auto f = read_safetensors(p);
  check_same(t, f);
  BOOST_TEST((f.metadata == meta));

  auto g = parse_safetensors(to_safetensors_bytes(t, meta));
  check_same(t, g);
  BOOST_TEST((g.metadata == meta));

  // No metadata, no tensors: still a valid file.
  write_safetensors(dir / "none.safetensors", named{});
  auto n = read_safetensors(dir / "none.safetensors");
  BOOST_TEST(n.tensors.empty());
  BOOST_TEST(n.metadata.empty());
}

BOOST_AUTO_TEST_CASE(bytes_are_deterministic_and_aligned) {
  temp_dir dir;
  auto t = sample_tensors();
  named reversed(t.rbegin(), t.rend());
  std::map<std::string, std::string> meta{{"k", "v"}};
  auto a = to_safetensors_bytes(t, meta);
  auto b = to_safetensors_bytes(reversed, meta);
  BOOST_TEST((a == b));
  write_safetensors(dir / "x.safetensors", reversed, meta);
  BOOST_TEST((read_file(dir / "x.safetensors", 1 << 20) == a));

  std::uint64_t n = 0;
  std::memcpy(&n, a.data(), 8);
  BOOST_TEST(n % 8 == 0u);
  std::string header(reinterpret_cast<const char*>(a.data()) + 8, n);
  BOOST_TEST(
      header.rfind("{\"__metadata__\":{\"k\":\"v\"},\"a.f64\":{\"dtype\":\"F64\",\"shape\":[3],"
                   "\"data_offsets\":[0,24]}",
                   0) == 0u);
  BOOST_TEST(safetensors_header(t, meta) ==
             std::string(reinterpret_cast<const char*>(a.data()), 8 + n));
}

BOOST_AUTO_TEST_CASE(writer_rejects_bad_arguments) {
  named dup{{"x", tensor::zeros(dtype::f32, {1})}, {"x", tensor::zeros(dtype::f32, {1})}};
  BOOST_CHECK_THROW(to_safetensors_bytes(dup), std::invalid_argument);
  named reserved{{"__metadata__", tensor::zeros(dtype::f32, {1})}};
  BOOST_CHECK_THROW(to_safetensors_bytes(reserved), std::invalid_argument);
  named undefined{{"u", tensor{}}};
  BOOST_CHECK_THROW(to_safetensors_bytes(undefined), std::invalid_argument);
  named bad_utf8{{"\xff\xfe", tensor::zeros(dtype::f32, {1})}};
  BOOST_CHECK_THROW(to_safetensors_bytes(bad_utf8), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(python_layout_parses) {
  // What Python's safetensors writes for
  //   save_file({"weight": ones(2,2), "bias": [0.5,-1], "step": int64 3}, f, {"format": "pt"}):
  // metadata first, tensors ordered by dtype alignment then name (so offsets are
  // not in name order), fields dtype/shape/data_offsets, header padded with
  // spaces to a multiple of 8.
  std::string h =
      R"({"__metadata__":{"format":"pt"},"step":{"dtype":"I64","shape":[],)"
      R"("data_offsets":[0,8]},"bias":{"dtype":"F32","shape":[2],"data_offsets":[8,16]},)"
      R"("weight":{"dtype":"F32","shape":[2,2],"data_offsets":[16,32]}})";
  h.append((8 - h.size() % 8) % 8, ' ');
  std::vector<std::byte> b(8);
  std::uint64_t n = h.size();
  std::memcpy(b.data(), &n, 8);
  for (char c : h)
    b.push_back(static_cast<std::byte>(c));
  auto put = [&](const void* p, std::size_t len) {
    auto* c = static_cast<const std::byte*>(p);
    b.insert(b.end(), c, c + len);
  };
  std::int64_t step = 3;
  float bias[2] = {0.5f, -1.0f};
  float weight[4] = {1, 1, 1, 1};
  put(&step, 8);
  put(bias, 8);
  put(weight, 16);

  auto f = parse(b);
  BOOST_TEST(f.metadata.at("format") == "pt");
  BOOST_REQUIRE_EQUAL(f.tensors.size(), 3u);
  BOOST_TEST(f.tensors[0].first == "bias");
  BOOST_TEST(f.tensors[1].first == "step");
  BOOST_TEST(f.tensors[2].first == "weight");
  BOOST_TEST(f.at("step").values<std::int64_t>()[0] == 3);
  BOOST_TEST(f.at("step").rank() == 0u);
  BOOST_TEST(f.at("bias").values<float>()[1] == -1.0f);
  BOOST_TEST(to_string(f.at("weight").shape()) == "[2, 2]");

  // The same tensors written by troupe read back identically.
  named again(f.tensors.begin(), f.tensors.end());
  auto g = parse_safetensors(to_safetensors_bytes(again, f.metadata));
  check_same(again, g);
}

BOOST_AUTO_TEST_CASE(rejects_truncated_files) {
  temp_dir dir;
  auto good = to_safetensors_bytes(sample_tensors());
  BOOST_CHECK_EXCEPTION(parse({}), input_error, message_has("test.safetensors", "too short"));
  std::vector<std::byte> five(good.begin(), good.begin() + 5);
  BOOST_CHECK_EXCEPTION(parse(five), input_error, message_has("too short"));
  // Cut inside the header: the length prefix points beyond the file.
  std::vector<std::byte> in_header(good.begin(), good.begin() + 40);
  BOOST_CHECK_EXCEPTION(parse(in_header), input_error, message_has("header length"));
  // Cut inside the data: the tensors no longer fit the buffer.
  std::vector<std::byte> in_data(good.begin(), good.end() - 3);
  BOOST_CHECK_EXCEPTION(parse(in_data), input_error, message_has("outside"));
  // Same through the file reader, whose message names the file.
  auto p = dir / "cut.safetensors";
  troupe::test::write_plain<std::byte>(p, in_data);
  BOOST_CHECK_EXCEPTION(read_safetensors(p), input_error, message_has(p.string(), "outside"));
  BOOST_CHECK_EXCEPTION(read_safetensors(dir / "missing.safetensors"), input_error,
                        message_has("missing.safetensors", "cannot open"));
}

BOOST_AUTO_TEST_CASE(rejects_bad_header_lengths) {
  BOOST_CHECK_EXCEPTION(parse(image("{}", 0, 1000)), input_error,
                        message_has("header length 1000", "exceeds"));
  BOOST_CHECK_EXCEPTION(parse(image("{}", 0, std::numeric_limits<std::uint64_t>::max() - 1)),
                        input_error, message_has("limit"));
  BOOST_CHECK_EXCEPTION(parse(image("{}", 0, std::uint64_t{1} << 63)), input_error,
                        message_has("limit"));
  BOOST_CHECK_EXCEPTION(parse(image("{}", 0, 100'000'001)), input_error, message_has("limit"));
  BOOST_CHECK_EXCEPTION(parse(image("{}", 0, 0)), input_error, message_has("too short"));
}

BOOST_AUTO_TEST_CASE(rejects_bad_json) {
  for (std::string h : {"{\"a\": ", "not json", "[1,2]", "{\"a\":{\"dtype\":\"F32\"}} x", "\"str\"",
                        "{\"a\":{\"dtype\":\"F32\",\"shape\":[[[1]]],\"data_offsets\":[0,4]}}"}) {
    BOOST_TEST_CONTEXT("header " << h) {
      BOOST_CHECK_THROW(parse(image(h, 0)), input_error);
    }
  }
  BOOST_CHECK_EXCEPTION(parse(image("{\"a\": ", 0)), input_error, message_has("not valid JSON"));
  // Deep nesting is refused before it is built.
  std::string deep = "{\"__metadata__\":" + std::string(1000, '[') + std::string(1000, ']') + "}";
  BOOST_CHECK_EXCEPTION(parse(image(deep, 0)), input_error, message_has("nests deeper"));
  BOOST_CHECK_EXCEPTION(parse(image(R"({"__metadata__":{"k":1}})", 0)), input_error,
                        message_has("__metadata__", "'k'"));
}

BOOST_AUTO_TEST_CASE(rejects_unknown_dtype) {
  BOOST_CHECK_EXCEPTION(
      parse(image(R"({"x":{"dtype":"I16","shape":[2],"data_offsets":[0,4]}})", 4)), input_error,
      message_has("tensor 'x'", "unsupported dtype 'I16'"));
  BOOST_CHECK_EXCEPTION(parse(image(R"({"x":{"dtype":7,"shape":[2],"data_offsets":[0,4]}})", 4)),
                        input_error, message_has("tensor 'x'", "dtype"));
}

// PyTorch's half tensors: F16 and BF16 are widened to f32, exactly, and sized
// by their 2-byte elements when the offsets are checked.
BOOST_AUTO_TEST_CASE(reads_f16_and_bf16_as_f32) {
  auto img = image(R"({"h":{"dtype":"F16","shape":[4],"data_offsets":[0,8]},)"
                   R"("b":{"dtype":"BF16","shape":[2],"data_offsets":[8,12]}})",
                   12);
  const std::uint16_t halves[4] = {0x3c00, 0xc000, 0x0001, 0x7bff}; // 1, -2, 2^-24, 65504
  const std::uint16_t bf[2] = {0x3fc0, 0xc2f7};                     // 1.5, -123.5
  std::memcpy(img.data() + img.size() - 12, halves, 8);
  std::memcpy(img.data() + img.size() - 4, bf, 4);
  auto f = parse(img);
  BOOST_TEST((f.at("h").type() == dtype::f32));
  const std::vector<float> h(f.at("h").values<float>().begin(), f.at("h").values<float>().end());
  BOOST_TEST(h == (std::vector<float>{1.0f, -2.0f, 0x1p-24f, 65504.0f}),
             boost::test_tools::per_element());
  const std::vector<float> b(f.at("b").values<float>().begin(), f.at("b").values<float>().end());
  BOOST_TEST(b == (std::vector<float>{1.5f, -123.5f}), boost::test_tools::per_element());
  BOOST_CHECK_EXCEPTION(
      parse(image(R"({"h":{"dtype":"F16","shape":[4],"data_offsets":[0,16]}})", 16)), input_error,
      message_has("tensor 'h'", "F16 needs 8 bytes"));
}

BOOST_AUTO_TEST_CASE(rejects_bad_shapes_and_fields) {
  BOOST_CHECK_EXCEPTION(
      parse(image(R"({"x":{"dtype":"F32","shape":[-1],"data_offsets":[0,0]}})", 0)), input_error,
      message_has("tensor 'x'", "shape[0]", "negative"));
  BOOST_CHECK_EXCEPTION(
      parse(image(R"({"x":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})", 4)), input_error,
      message_has("tensor 'x'", "shape[0]"));
  // 2^32 * 2^32 * 4 bytes overflows 64 bits.
  BOOST_CHECK_EXCEPTION(
      parse(image(R"({"x":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}})",
                  0)),
      input_error, message_has("tensor 'x'", "overflow"));
  BOOST_CHECK_EXCEPTION(
      parse(
          image(R"({"x":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,0]}})", 0)),
      input_error, message_has("tensor 'x'", "overflow"));
  BOOST_CHECK_EXCEPTION(parse(image(R"({"x":{"dtype":"F32","shape":[1]}})", 4)), input_error,
                        message_has("tensor 'x'", "missing field 'data_offsets'"));
  BOOST_CHECK_EXCEPTION(
      parse(image(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"extra":1}})", 4)),
      input_error, message_has("tensor 'x'", "unknown field 'extra'"));
  BOOST_CHECK_EXCEPTION(
      parse(image(R"({"x":{"dtype":"F32","dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 4)),
      input_error, message_has("duplicate field 'dtype'"));
  BOOST_CHECK_EXCEPTION(parse(image(R"({"x":[1,2]})", 0)), input_error,
                        message_has("tensor 'x'", "not an object"));
}

BOOST_AUTO_TEST_CASE(rejects_shape_offset_mismatch) {
  BOOST_CHECK_EXCEPTION(
      parse(image(R"({"x":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}})", 20)), input_error,
      message_has("tensor 'x'", "needs 24 bytes"));
  BOOST_CHECK_EXCEPTION(
      parse(image(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}})", 4)), input_error,
      message_has("tensor 'x'", "begin after end"));
  BOOST_CHECK_EXCEPTION(parse(image(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0]}})", 4)),
                        input_error, message_has("tensor 'x'", "data_offsets"));
}

BOOST_AUTO_TEST_CASE(rejects_overlapping_offsets) {
  BOOST_CHECK_EXCEPTION(parse(image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                    R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                                    12)),
                        input_error, message_has("'b'", "overlaps tensor 'a'"));
  // Two tensors sharing the same bytes.
  BOOST_CHECK_EXCEPTION(parse(image(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                                    R"("b":{"dtype":"I32","shape":[1],"data_offsets":[0,4]}})",
                                    4)),
                        input_error, message_has("overlaps"));
}

BOOST_AUTO_TEST_CASE(rejects_offsets_out_of_range_or_not_covering) {
  BOOST_CHECK_EXCEPTION(
      parse(image(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 4)), input_error,
      message_has("tensor 'x'", "outside the 4-byte data buffer"));
  BOOST_CHECK_EXCEPTION(
      parse(
          image(R"({"x":{"dtype":"U8","shape":[1],"data_offsets":[18446744073709551615,0]}})", 4)),
      input_error, message_has("tensor 'x'"));
  // Gap before a tensor, and bytes left over after the last one.
  BOOST_CHECK_EXCEPTION(
      parse(image(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8)), input_error,
      message_has("tensor 'x'", "unused"));
  BOOST_CHECK_EXCEPTION(
      parse(image(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 8)), input_error,
      message_has("cover 4 bytes of the 8-byte"));
}

BOOST_AUTO_TEST_CASE(rejects_duplicate_names) {
  BOOST_CHECK_EXCEPTION(parse(image(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                                    R"("x":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                                    8)),
                        input_error, message_has("duplicate tensor name 'x'"));
}
