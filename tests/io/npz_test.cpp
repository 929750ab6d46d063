#define BOOST_TEST_DYN_LINK
#define BOOST_TEST_MODULE io_npz
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "runtime/error.hpp"
#include "runtime/io/npy.hpp"
#include "runtime/io/npz.hpp"
#include "temp_dir.hpp"

using namespace troupe::runtime;
using troupe::test::message_has;
using troupe::test::read_plain;
using troupe::test::temp_dir;
using troupe::test::write_plain;
using named = std::vector<std::pair<std::string, tensor>>;

namespace {

named sample() {
  std::vector<float> big(20000);
  for (std::size_t i = 0; i < big.size(); ++i)
    big[i] = static_cast<float>(i % 97) * 0.5f;
  return {{"x", tensor::from_vector<float>({10000, 2}, big)},
          {"y", tensor::from_vector<std::int64_t>({3}, {0, 7, -2})},
          {"u", tensor::from_vector<std::uint8_t>({2, 2}, {0, 1, 254, 255})},
          {"scalar", tensor::from_vector<double>({}, {2.5})}};
}

void check_same(const named& want, const npz_file& got) {
  BOOST_REQUIRE_EQUAL(got.arrays.size(), want.size());
  for (std::size_t i = 0; i < want.size(); ++i) {
    BOOST_TEST_CONTEXT("array " << want[i].first) {
      BOOST_TEST(got.arrays[i].first == want[i].first);
      BOOST_TEST(bitwise_equal(got.arrays[i].second, want[i].second));
      BOOST_TEST((got.arrays[i].second.shape() == want[i].second.shape()));
    }
  }
}

} // namespace

// np.savez (stored) and np.savez_compressed (deflate) layouts both round-trip.
BOOST_AUTO_TEST_CASE(round_trips_stored_and_deflated) {
  temp_dir dir;
  const auto arrays = sample();
  for (bool compress : {false, true}) {
    BOOST_TEST_CONTEXT("compress " << compress) {
      const auto p = dir / (compress ? "c.npz" : "s.npz");
      write_npz(p, arrays, compress);
      check_same(arrays, read_npz(p));
      BOOST_TEST((npz_array_names(p) == std::vector<std::string>{"x", "y", "u", "scalar"}));
      const std::vector<std::string> some = {"u", "x"};
      auto part = read_npz(p, some);
      BOOST_REQUIRE_EQUAL(part.arrays.size(), 2u);
      BOOST_TEST(bitwise_equal(part.at("u"), arrays[2].second));
      BOOST_TEST(bitwise_equal(part.at("x"), arrays[0].second));
    }
  }
  // Deflate really compressed the repetitive x (the stored archive holds it raw).
  BOOST_TEST(std::filesystem::file_size(dir / "c.npz") <
             std::filesystem::file_size(dir / "s.npz") / 4);
}

BOOST_AUTO_TEST_CASE(rejects_wrong_magic) {
  temp_dir dir;
  write_plain<char>(dir / "text.npz", std::string{"x,y\n1,2\n"});
  BOOST_CHECK_EXCEPTION(read_npz(dir / "text.npz"), input_error,
                        message_has("text.npz", "wrong magic", "zip archive"));
  BOOST_CHECK_EXCEPTION(read_npz(dir / "absent.npz"), input_error,
                        message_has("absent.npz", "no such file"));
}

BOOST_AUTO_TEST_CASE(rejects_truncated_archive) {
  temp_dir dir;
  write_npz(dir / "full.npz", sample(), true);
  auto b = read_plain(dir / "full.npz");
  b.resize(b.size() / 2); // the central directory is at the end: gone
  write_plain<unsigned char>(dir / "half.npz", b);
  BOOST_CHECK_EXCEPTION(read_npz(dir / "half.npz"), input_error,
                        message_has("half.npz", "corrupt or truncated zip archive"));
}

// A member's declared size is checked against what its compressed bytes can hold
// before its tensor is allocated: here a stored member claims 2 GiB.
BOOST_AUTO_TEST_CASE(rejects_sizes_beyond_the_archive) {
  temp_dir dir;
  named one = {{"x", tensor::from_vector<float>({4}, {1, 2, 3, 4})}};
  write_npz(dir / "ok.npz", one, false);
  auto b = read_plain(dir / "ok.npz");
  auto patch = [&](const char* sig, std::size_t offset) {
    const std::string s{sig, 4};
    auto it = std::search(b.begin(), b.end(), s.begin(), s.end());
    BOOST_REQUIRE(it != b.end());
    // Uncompressed size 0x7fffffff (0xffffffff would mean "see the zip64 field").
    for (int i = 0; i < 4; ++i)
      *(it + static_cast<std::ptrdiff_t>(offset) + i) = i == 3 ? 0x7f : 0xff;
  };
  patch("PK\x03\x04", 22); // local header
  patch("PK\x01\x02", 24); // central directory
  write_plain<unsigned char>(dir / "bomb.npz", b);
  BOOST_CHECK_EXCEPTION(read_npz(dir / "bomb.npz"), input_error,
                        message_has("bomb.npz", "array 'x'", "declares 2147483647 bytes"));
}

BOOST_AUTO_TEST_CASE(rejects_corrupt_member_data) {
  temp_dir dir;
  for (bool compress : {false, true}) {
    BOOST_TEST_CONTEXT("compress " << compress) {
      named one = {{"x", tensor::from_vector<float>({64}, std::vector<float>(64, 1.25f))}};
      write_npz(dir / "ok.npz", one, compress);
      auto b = read_plain(dir / "ok.npz");
      // The local header (30 bytes + "x.npy") is followed by the member's data:
      // flip bytes near the data's end, past the .npy header.
      const std::size_t data_start = 30 + 5;
      const std::size_t flip = compress ? data_start + 20 : data_start + 200;
      b[flip] ^= 0x55;
      b[flip + 1] ^= 0x55;
      write_plain<unsigned char>(dir / "bad.npz", b);
      BOOST_CHECK_EXCEPTION(read_npz(dir / "bad.npz"), input_error,
                            message_has("bad.npz", "array 'x'"));
    }
  }
}

BOOST_AUTO_TEST_CASE(rejects_missing_array_naming_those_present) {
  temp_dir dir;
  write_npz(dir / "a.npz", sample());
  const std::vector<std::string> want = {"x", "labels"};
  BOOST_CHECK_EXCEPTION(read_npz(dir / "a.npz", want), input_error,
                        message_has("a.npz", "no array 'labels'", "'x', 'y', 'u', 'scalar'"));
}

// A bad .npy member is reported with the archive and the array's name: a stored
// member patched in place to fortran order (the parse fails before the CRC check).
BOOST_AUTO_TEST_CASE(member_errors_name_the_array) {
  temp_dir dir;
  named one = {{"w", tensor::from_vector<float>({2, 2}, {1, 2, 3, 4})}};
  write_npz(dir / "f.npz", one, false);
  auto b = read_plain(dir / "f.npz");
  const std::string from = "'fortran_order': False", to = "'fortran_order': True ";
  auto it = std::search(b.begin(), b.end(), from.begin(), from.end());
  BOOST_REQUIRE(it != b.end());
  std::copy(to.begin(), to.end(), it);
  write_plain<unsigned char>(dir / "f.npz", b);
  BOOST_CHECK_EXCEPTION(read_npz(dir / "f.npz"), input_error,
                        message_has("f.npz", "array 'w'", "fortran_order is True"));
}

// Cross-check with NumPy: tests/io/npz_numpy_check.py writes fixtures with np.savez,
// np.savez_compressed and np.save into $TROUPE_NUMPY_FIXTURES, runs this case, then
// loads what this case wrote with np.load. Without the variable it does nothing.
BOOST_AUTO_TEST_CASE(numpy_fixtures) {
  const char* env = std::getenv("TROUPE_NUMPY_FIXTURES");
  if (env == nullptr)
    return;
  const std::filesystem::path dir = env;
  for (const char* name : {"savez.npz", "savez_compressed.npz"}) {
    BOOST_TEST_CONTEXT(name) {
      auto f = read_npz(dir / name);
      const auto& x = f.at("x");
      BOOST_TEST((x.type() == dtype::f32));
      BOOST_TEST((x.shape() == shape_t{1000, 7}));
      for (std::int64_t i = 0; i < x.numel(); ++i)
        if (x.data<float>()[i] != static_cast<float>(i % 101) / 8.0f)
          BOOST_FAIL("x[" << i << "] = " << x.data<float>()[i]);
      const auto& y = f.at("y");
      BOOST_TEST((y.type() == dtype::i64));
      for (std::int64_t i = 0; i < y.numel(); ++i)
        BOOST_TEST(y.data<std::int64_t>()[i] == i % 20);
      const auto& h = f.at("h");
      BOOST_TEST((h.type() == dtype::f32)); // '<f2' widened
      BOOST_TEST(h.data<float>()[3] == 0.75f);
      BOOST_TEST(f.at("u").data<std::uint8_t>()[4] == 4);
      BOOST_TEST(f.at("b").data<std::uint8_t>()[1] == 1);
      BOOST_TEST(f.at("d").data<double>()[2] == 0.1 * 2);
    }
  }
  BOOST_TEST(read_npy(dir / "v2.npy").data<std::int32_t>()[5] == 5);
  BOOST_CHECK_EXCEPTION(read_npy(dir / "fortran.npy"), input_error,
                        message_has("fortran.npy", "fortran_order is True"));
  BOOST_CHECK_EXCEPTION(read_npy(dir / "big_endian.npy"), input_error,
                        message_has("big_endian.npy", "big-endian dtype '>f4'"));
  BOOST_CHECK_EXCEPTION(read_npy(dir / "int16.npy"), input_error,
                        message_has("int16.npy", "unsupported dtype '<i2'"));
  // For NumPy to read back.
  write_npz(dir / "ours.npz", sample(), false);
  write_npz(dir / "ours_compressed.npz", sample(), true);
  write_npy(dir / "ours.npy", tensor::from_vector<std::int32_t>({2, 3}, {1, -2, 3, -4, 5, -6}));
}
