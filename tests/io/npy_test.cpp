#define BOOST_TEST_DYN_LINK
#define BOOST_TEST_MODULE io_npy
#include <boost/test/unit_test.hpp>

#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "runtime/error.hpp"
#include "runtime/io/npy.hpp"
#include "temp_dir.hpp"

using namespace troupe::runtime;
using troupe::test::message_has;
using troupe::test::temp_dir;

namespace {

/// A .npy image written by hand (not by to_npy_bytes): version, header dict, data.
std::vector<std::byte> npy(const std::string& dict, const std::vector<unsigned char>& data,
                           int major = 1) {
  std::string header = dict;
  const std::size_t pre = major == 1 ? 10 : 12;
  header.append((64 - (pre + header.size() + 1) % 64) % 64, ' ');
  header += '\n';
  std::vector<std::byte> out;
  for (unsigned char c : {0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59}) // \x93NUMPY
    out.push_back(std::byte{c});
  out.push_back(std::byte(major));
  out.push_back(std::byte{0});
  for (std::size_t i = 0; i < pre - 8; ++i)
    out.push_back(std::byte((header.size() >> (8 * i)) & 0xff));
  for (char c : header)
    out.push_back(std::byte(c));
  for (unsigned char c : data)
    out.push_back(std::byte{c});
  return out;
}

std::string dict(const std::string& descr, const std::string& shape, bool fortran = false) {
  return "{'descr': '" + descr + "', 'fortran_order': " + (fortran ? "True" : "False") +
         ", 'shape': " + shape + ", }";
}

template <class T>
std::vector<unsigned char> le(std::vector<T> v) {
  std::vector<unsigned char> out(v.size() * sizeof(T));
  std::memcpy(out.data(), v.data(), out.size());
  return out;
}

template <class T>
std::vector<T> values(const tensor& t) {
  return {t.values<T>().begin(), t.values<T>().end()};
}

std::filesystem::path put(const temp_dir& dir, const std::string& name,
                          const std::vector<std::byte>& b) {
  troupe::test::write_plain<std::byte>(dir / name, b);
  return dir / name;
}

} // namespace

// Every dtype and rank round-trips through to_npy_bytes, a file, and read_npy.
BOOST_AUTO_TEST_CASE(round_trips_every_dtype) {
  temp_dir dir;
  const std::vector<tensor> cases = {
      tensor::from_vector<float>({2, 3}, {1.5f, -2, 3, 4, 5, 6.25f}),
      tensor::from_vector<double>({3}, {1e300, -0.0, 3.5}),
      tensor::from_vector<std::int32_t>({2, 1, 2}, {-1, 2, -3, 4}),
      tensor::from_vector<std::int64_t>({2}, {std::numeric_limits<std::int64_t>::min(), 42}),
      tensor::from_vector<std::uint8_t>({1, 1, 4}, {0, 1, 128, 255}),
      tensor::from_vector<float>({}, {7.0f}),
      tensor::empty(dtype::i32, {3, 0}),
  };
  for (std::size_t i = 0; i < cases.size(); ++i) {
    BOOST_TEST_CONTEXT("case " << i) {
      const auto p = dir / (std::to_string(i) + ".npy");
      write_npy(p, cases[i]);
      const auto got = read_npy(p);
      BOOST_TEST(bitwise_equal(got, cases[i]));
      BOOST_TEST((got.shape() == cases[i].shape()));
      // np.save aligns the data to 64 bytes.
      BOOST_TEST((to_npy_bytes(cases[i]).size() - cases[i].nbytes()) % 64 == 0u);
    }
  }
}

// Versions 2.0 and 3.0 have a 4-byte header length; '<f2' widens to f32 exactly,
// '|b1' reads as u8.
BOOST_AUTO_TEST_CASE(reads_versions_and_narrow_types) {
  for (int major : {1, 2, 3}) {
    BOOST_TEST_CONTEXT("version " << major) {
      auto t = parse_npy(npy(dict("<i8", "(2,)"), le<std::int64_t>({-5, 1LL << 40}), major));
      BOOST_TEST((t.type() == dtype::i64));
      BOOST_TEST((values<std::int64_t>(t) == std::vector<std::int64_t>{-5, 1LL << 40}));
    }
  }
  auto h = parse_npy(npy(dict("<f2", "(1, 3)"), le<std::uint16_t>({0x3c00, 0xc000, 0x0001})));
  BOOST_TEST((h.type() == dtype::f32));
  BOOST_TEST((h.shape() == (shape_t{1, 3})));
  BOOST_TEST((values<float>(h) == std::vector<float>{1.0f, -2.0f, 0x1p-24f}));
  auto b = parse_npy(npy(dict("|b1", "(2,)"), {1, 0}));
  BOOST_TEST((b.type() == dtype::u8));
  BOOST_TEST((values<std::uint8_t>(b) == std::vector<std::uint8_t>{1, 0}));
  // Double quotes and no trailing comma are Python too.
  auto d = parse_npy(
      npy(R"({"descr": "<f4", "fortran_order": False, "shape": (1,)})", le<float>({2.5f})));
  BOOST_TEST(d.data<float>()[0] == 2.5f);
}

BOOST_AUTO_TEST_CASE(rejects_wrong_magic) {
  temp_dir dir;
  auto b = npy(dict("<f4", "(1,)"), le<float>({1}));
  b[1] = std::byte{'X'};
  BOOST_CHECK_EXCEPTION(read_npy(put(dir, "magic.npy", b)), input_error,
                        message_has("magic.npy", "wrong magic"));
  auto v = npy(dict("<f4", "(1,)"), le<float>({1}));
  v[6] = std::byte{4};
  BOOST_CHECK_EXCEPTION(read_npy(put(dir, "v4.npy", v)), input_error,
                        message_has("v4.npy", "version 4.0"));
}

BOOST_AUTO_TEST_CASE(rejects_truncated) {
  temp_dir dir;
  auto b = npy(dict("<f4", "(2, 2)"), le<float>({1, 2, 3, 4}));
  b.resize(b.size() - 1);
  BOOST_CHECK_EXCEPTION(read_npy(put(dir, "short.npy", b)), input_error,
                        message_has("short.npy", "truncated", "needs 16 data bytes, only 15"));
  b.resize(20); // inside the header
  BOOST_CHECK_EXCEPTION(read_npy(put(dir, "head.npy", b)), input_error,
                        message_has("head.npy", "truncated", "header"));
  b.resize(5);
  BOOST_CHECK_EXCEPTION(read_npy(put(dir, "tiny.npy", b)), input_error,
                        message_has("tiny.npy", "truncated"));
  auto t = npy(dict("<f4", "(1,)"), le<float>({1, 2}));
  BOOST_CHECK_EXCEPTION(read_npy(put(dir, "trail.npy", t)), input_error,
                        message_has("trail.npy", "4 bytes follow", "trailing"));
}

// A header cannot make the reader allocate more than the file holds.
BOOST_AUTO_TEST_CASE(rejects_sizes_beyond_the_file) {
  BOOST_CHECK_EXCEPTION(parse_npy(npy(dict("<f8", "(100000, 100000, 100000)"), {}), "huge"),
                        input_error, message_has("huge", "truncated", "only 0"));
  BOOST_CHECK_EXCEPTION(
      parse_npy(npy(dict("<f8", "(4294967296, 4294967296, 4294967296)"), {}), "ovf"), input_error,
      message_has("ovf", "overflows"));
  BOOST_CHECK_EXCEPTION(parse_npy(npy(dict("<f8", "(99999999999999999999,)"), {}), "big"),
                        input_error, message_has("big", "overflows"));
}

BOOST_AUTO_TEST_CASE(rejects_unsupported_dtype_by_name) {
  temp_dir dir;
  BOOST_CHECK_EXCEPTION(read_npy(put(dir, "i16.npy", npy(dict("<i2", "(1,)"), {0, 0}))),
                        input_error, message_has("i16.npy", "unsupported dtype '<i2'"));
  BOOST_CHECK_EXCEPTION(read_npy(put(dir, "c.npy", npy(dict("<c8", "(1,)"), le<float>({0, 0})))),
                        input_error, message_has("c.npy", "unsupported dtype '<c8'"));
  BOOST_CHECK_EXCEPTION(read_npy(put(dir, "be.npy", npy(dict(">f4", "(1,)"), le<float>({1})))),
                        input_error, message_has("be.npy", "big-endian dtype '>f4'"));
  BOOST_CHECK_EXCEPTION(
      parse_npy(
          npy("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }", le<float>({1})),
          "rec"),
      input_error, message_has("rec", "structured"));
}

BOOST_AUTO_TEST_CASE(rejects_fortran_order) {
  temp_dir dir;
  auto b = npy(dict("<f4", "(2, 2)", true), le<float>({1, 2, 3, 4}));
  BOOST_CHECK_EXCEPTION(read_npy(put(dir, "fortran.npy", b)), input_error,
                        message_has("fortran.npy", "fortran_order is True"));
}

BOOST_AUTO_TEST_CASE(rejects_malformed_headers) {
  for (const std::string d :
       {"{'descr': '<f4', 'shape': (1,), }",
        "{'descr': '<f4', 'fortran_order': Maybe, 'shape': (1,), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1, x), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'z': 1}", "['descr']"}) {
    BOOST_TEST_CONTEXT(d) {
      BOOST_CHECK_EXCEPTION(parse_npy(npy(d, le<float>({1})), "m.npy"), input_error,
                            message_has("m.npy", "malformed header"));
    }
  }
}
