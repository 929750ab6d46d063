#define BOOST_TEST_DYN_LINK
#define BOOST_TEST_MODULE io_idx
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include <zlib.h>

#include "runtime/error.hpp"
#include "runtime/io/idx.hpp"
#include "temp_dir.hpp"

using namespace troupe::runtime;
using troupe::test::message_has;
using troupe::test::read_plain;
using troupe::test::temp_dir;
using bytes = std::vector<unsigned char>;

namespace {

const std::filesystem::path mnist_dir = std::filesystem::path{TROUPE_SOURCE_DIR} / "data/mnist";

/// An IDX image: magic 0x0000 TT NN, big-endian dims, then `data`.
bytes idx(std::vector<std::uint32_t> dims, const bytes& data, unsigned char type = 0x08) {
  bytes b{0, 0, type, static_cast<unsigned char>(dims.size())};
  for (auto d : dims)
    for (int s = 24; s >= 0; s -= 8)
      b.push_back(static_cast<unsigned char>(d >> s));
  b.insert(b.end(), data.begin(), data.end());
  return b;
}

bytes gzip(const bytes& in) {
  z_stream zs{};
  BOOST_REQUIRE(deflateInit2(&zs, 9, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) == Z_OK);
  bytes out(deflateBound(&zs, in.size()) + 64);
  zs.next_in = const_cast<unsigned char*>(in.data());
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = out.data();
  zs.avail_out = static_cast<uInt>(out.size());
  BOOST_REQUIRE(deflate(&zs, Z_FINISH) == Z_STREAM_END);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

std::filesystem::path put(const temp_dir& dir, const std::string& name, const bytes& b) {
  auto p = dir / name;
  troupe::test::write_plain<unsigned char>(p, b);
  return p;
}

bytes labels_data(std::size_t n) {
  bytes d(n);
  for (std::size_t i = 0; i < n; ++i)
    d[i] = static_cast<unsigned char>(i % 10);
  return d;
}

} // namespace

BOOST_AUTO_TEST_CASE(reads_repo_mnist_train) {
  auto s = load_mnist(mnist_dir, true);
  BOOST_TEST(to_string(s.images.shape()) == "[60000, 28, 28]");
  BOOST_TEST(to_string(s.labels.shape()) == "[60000]");
  BOOST_TEST((s.images.type() == dtype::u8));
  auto l = s.labels.values<std::uint8_t>();
  std::vector<int> first(l.begin(), l.begin() + 5);
  BOOST_TEST(first == (std::vector<int>{5, 0, 4, 1, 9}), boost::test_tools::per_element());
  std::array<int, 10> counts{};
  for (auto v : l)
    ++counts.at(v);
  std::array<int, 10> expected{5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949};
  BOOST_TEST(counts == expected, boost::test_tools::per_element());
  // Pixels are real images: not all zero, and the full byte range appears.
  auto px = s.images.values<std::uint8_t>();
  BOOST_TEST(*std::max_element(px.begin(), px.end()) == 255);
}

BOOST_AUTO_TEST_CASE(reads_repo_mnist_test) {
  auto s = load_mnist(mnist_dir, false);
  BOOST_TEST(to_string(s.images.shape()) == "[10000, 28, 28]");
  auto l = s.labels.values<std::uint8_t>();
  std::vector<int> first(l.begin(), l.begin() + 4);
  BOOST_TEST(first == (std::vector<int>{7, 2, 1, 0}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(raw_and_gzip_give_the_same_tensor) {
  temp_dir dir;
  bytes data{1, 2, 3, 4, 5, 6};
  auto raw = read_idx(put(dir, "a.idx", idx({2, 3}, data)));
  auto gz = read_idx(put(dir, "a.idx.gz", gzip(idx({2, 3}, data))));
  BOOST_TEST(to_string(raw.shape()) == "[2, 3]");
  BOOST_TEST(bitwise_equal(raw, gz));
  BOOST_TEST(raw.values<std::uint8_t>()[5] == 6);
  // Empty extents are allowed.
  auto empty = read_idx(put(dir, "e.idx.gz", gzip(idx({0, 28}, {}))));
  BOOST_TEST(empty.numel() == 0);
  // A decompressed MNIST file in the raw form loads too.
  auto labels = read_idx(mnist_dir / "t10k-labels-idx1-ubyte.gz");
  bytes raw_labels =
      idx({10000},
          bytes(labels.values<std::uint8_t>().begin(), labels.values<std::uint8_t>().end()), 0x08);
  BOOST_TEST(bitwise_equal(read_idx(put(dir, "l.idx", raw_labels)), labels));
}

BOOST_AUTO_TEST_CASE(rejects_missing_files) {
  temp_dir dir;
  BOOST_CHECK_EXCEPTION(read_idx(dir / "nope.gz"), input_error,
                        message_has("nope.gz", "No such file"));
  BOOST_CHECK_EXCEPTION(load_mnist(dir.path(), true), input_error,
                        message_has(dir.path().string(), "train-images-idx3-ubyte"));
}

BOOST_AUTO_TEST_CASE(rejects_truncated_raw_and_gzip) {
  temp_dir dir;
  auto good = idx({100}, labels_data(100));
  bytes cut(good.begin(), good.end() - 1);
  BOOST_CHECK_EXCEPTION(read_idx(put(dir, "cut.idx", cut)), input_error,
                        message_has("cut.idx", "truncated"));
  bytes cut_header(good.begin(), good.begin() + 6);
  BOOST_CHECK_EXCEPTION(read_idx(put(dir, "cuth.idx", cut_header)), input_error,
                        message_has("cuth.idx", "truncated"));
  BOOST_CHECK_EXCEPTION(read_idx(put(dir, "tiny.idx", bytes{0, 0})), input_error,
                        message_has("tiny.idx", "truncated"));
  BOOST_CHECK_EXCEPTION(read_idx(put(dir, "zero.idx", bytes{})), input_error,
                        message_has("zero.idx", "truncated"));

  // A gzip stream cut short (the real MNIST labels, halved).
  auto real = read_plain(mnist_dir / "train-labels-idx1-ubyte.gz");
  bytes half(real.begin(), real.begin() + real.size() / 2);
  BOOST_CHECK_EXCEPTION(read_idx(put(dir, "half.gz", half)), input_error,
                        message_has("half.gz", "truncated"));
  // A complete gzip stream whose content is shorter than its header says.
  BOOST_CHECK_EXCEPTION(read_idx(put(dir, "short.gz", gzip(cut))), input_error,
                        message_has("short.gz", "truncated"));
  // Only the gzip trailer is missing.
  auto whole = gzip(good);
  bytes no_trailer(whole.begin(), whole.end() - 8);
  BOOST_CHECK_EXCEPTION(read_idx(put(dir, "notrailer.gz", no_trailer)), input_error,
                        message_has("notrailer.gz", "truncated"));
}

BOOST_AUTO_TEST_CASE(rejects_wrong_magic_and_type) {
  temp_dir dir;
  auto b = idx({4}, {1, 2, 3, 4});
  b[0] = 0x01;
  BOOST_CHECK_EXCEPTION(read_idx(put(dir, "magic.idx", b)), input_error,
                        message_has("magic.idx", "wrong magic 0x01000801"));
  BOOST_CHECK_EXCEPTION(read_idx(put(dir, "magic.idx.gz", gzip(b))), input_error,
                        message_has("magic.idx.gz", "wrong magic"));
  // 0x0A is no IDX element type.
  auto f = idx({1}, {0, 0, 128, 63}, 0x0A);
  BOOST_CHECK_EXCEPTION(read_idx(put(dir, "float.idx", f)), input_error,
                        message_has("float.idx", "element type 0x0a"));
  auto nodims = idx({}, {});
  BOOST_CHECK_EXCEPTION(read_idx(put(dir, "nodims.idx", nodims)), input_error,
                        message_has("0 dimensions"));
  bytes text{'h', 'e', 'l', 'l', 'o', '\n'};
  BOOST_CHECK_EXCEPTION(read_idx(put(dir, "text.gz", text)), input_error,
                        message_has("text.gz", "not gzip"));
}

BOOST_AUTO_TEST_CASE(rejects_trailing_bytes) {
  temp_dir dir;
  auto b = idx({4}, {1, 2, 3, 4});
  b.push_back(9);
  BOOST_CHECK_EXCEPTION(read_idx(put(dir, "trail.idx", b)), input_error,
                        message_has("trail.idx", "1 bytes follow", "trailing"));
  // Extra decompressed bytes inside the gzip stream.
  BOOST_CHECK_EXCEPTION(read_idx(put(dir, "trail.idx.gz", gzip(b))), input_error,
                        message_has("trail.idx.gz", "1 decompressed bytes follow"));
  // Garbage after a complete gzip stream (including a second gzip member).
  auto gz = gzip(idx({4}, {1, 2, 3, 4}));
  auto junk = gz;
  junk.insert(junk.end(), {'j', 'u', 'n', 'k'});
  BOOST_CHECK_EXCEPTION(read_idx(put(dir, "junk.gz", junk)), input_error,
                        message_has("junk.gz", "4 bytes follow the end of the gzip stream"));
  auto twice = gz;
  twice.insert(twice.end(), gz.begin(), gz.end());
  BOOST_CHECK_EXCEPTION(read_idx(put(dir, "twice.gz", twice)), input_error,
                        message_has("twice.gz", "follow the end of the gzip stream"));
}

BOOST_AUTO_TEST_CASE(rejects_corrupt_gzip) {
  temp_dir dir;
  auto real = read_plain(mnist_dir / "t10k-labels-idx1-ubyte.gz");
  auto bad = real;
  for (std::size_t i = bad.size() / 2; i < bad.size() / 2 + 16; ++i)
    bad[i] ^= 0x5a;
  BOOST_CHECK_EXCEPTION(read_idx(put(dir, "corrupt.gz", bad)), input_error,
                        message_has("corrupt.gz"));
  // A flipped CRC in the trailer is detected too.
  auto crc = gzip(idx({4}, {1, 2, 3, 4}));
  crc[crc.size() - 8] ^= 0xff;
  BOOST_CHECK_EXCEPTION(read_idx(put(dir, "crc.gz", crc)), input_error,
                        message_has("crc.gz", "corrupt gzip"));
}

BOOST_AUTO_TEST_CASE(rejects_oversized_dimensions) {
  temp_dir dir;
  // 60000 x 100000 x 100000 bytes: far beyond the cap, refused before allocating.
  auto huge = idx({60000, 100000, 100000}, {});
  BOOST_CHECK_EXCEPTION(read_idx(put(dir, "huge.idx.gz", gzip(huge))), input_error,
                        message_has("huge.idx.gz", "limit"));
  auto overflow = idx(std::vector<std::uint32_t>(8, 0xffffffffu), {});
  BOOST_CHECK_EXCEPTION(read_idx(put(dir, "ovf.idx", overflow)), input_error,
                        message_has("ovf.idx", "overflow"));
  BOOST_CHECK_EXCEPTION(read_idx(put(dir, "cap.idx", idx({10}, labels_data(10))), 9), input_error,
                        message_has("cap.idx", "limit of 9"));
  // Under the cap, but more than deflate can expand a file this small into: refused
  // before the tensor is allocated.
  BOOST_CHECK_EXCEPTION(read_idx(put(dir, "bomb.idx.gz", gzip(idx({100'000'000}, {})))),
                        input_error, message_has("bomb.idx.gz", "more than a gzip file of"));
}

BOOST_AUTO_TEST_CASE(load_mnist_checks_consistency) {
  temp_dir dir;
  put(dir, "train-images-idx3-ubyte", idx({3, 2, 2}, bytes(12, 7)));
  put(dir, "train-labels-idx1-ubyte.gz", gzip(idx({2}, {1, 2})));
  BOOST_CHECK_EXCEPTION(load_mnist(dir.path(), true), input_error,
                        message_has("3 images but 2 labels"));
  put(dir, "train-labels-idx1-ubyte.gz", gzip(idx({3}, {1, 10, 2})));
  BOOST_CHECK_EXCEPTION(load_mnist(dir.path(), true), input_error,
                        message_has("label 10 at index 1"));
  put(dir, "train-labels-idx1-ubyte.gz", gzip(idx({3}, {1, 9, 2})));
  auto s = load_mnist(dir.path(), true);
  BOOST_TEST(s.images.dim(0) == 3);
  BOOST_CHECK_EXCEPTION(load_mnist(dir.path(), false), input_error, message_has("t10k-images"));
}

// Every IDX element type, big-endian in the file: i8 and i16 widen to i32, the
// others keep their width; gzip reads the same.
BOOST_AUTO_TEST_CASE(reads_every_element_type) {
  temp_dir dir;
  auto i8 = read_idx(put(dir, "i8.idx", idx({3}, {0xff, 0x7f, 0x80}, 0x09)));
  BOOST_TEST((i8.type() == dtype::i32));
  BOOST_TEST((std::vector<std::int32_t>(i8.values<std::int32_t>().begin(),
                                        i8.values<std::int32_t>().end()) ==
              std::vector<std::int32_t>{-1, 127, -128}));
  auto i16 = read_idx(put(dir, "i16.idx.gz", gzip(idx({2, 1}, {0xfe, 0xd4, 0x01, 0x02}, 0x0B))));
  BOOST_TEST((i16.type() == dtype::i32));
  BOOST_TEST((i16.shape() == (shape_t{2, 1})));
  BOOST_TEST(i16.data<std::int32_t>()[0] == -300);
  BOOST_TEST(i16.data<std::int32_t>()[1] == 258);
  auto i32 = read_idx(put(dir, "i32.idx", idx({1}, {0x80, 0, 0, 1}, 0x0C)));
  BOOST_TEST(i32.data<std::int32_t>()[0] == std::int32_t(0x80000001u));
  auto f32 = read_idx(put(dir, "f32.idx", idx({1}, {0x3f, 0xc0, 0, 0}, 0x0D)));
  BOOST_TEST((f32.type() == dtype::f32));
  BOOST_TEST(f32.data<float>()[0] == 1.5f);
  auto f64 = read_idx(
      put(dir, "f64.idx", idx({1}, {0xc0, 0x09, 0x21, 0xfb, 0x54, 0x44, 0x2d, 0x18}, 0x0E)));
  BOOST_TEST((f64.type() == dtype::f64));
  BOOST_TEST(f64.data<double>()[0] == -3.141592653589793);
  // Sizes count the element width: 2 i16 elements need 4 data bytes (12 with the header).
  BOOST_CHECK_EXCEPTION(read_idx(put(dir, "short16.idx", idx({2}, {0, 1, 0}, 0x0B))), input_error,
                        message_has("short16.idx", "truncated", "need 12 bytes"));
  BOOST_CHECK_EXCEPTION(read_idx(put(dir, "short16.idx.gz", gzip(idx({2}, {0, 1, 0}, 0x0B)))),
                        input_error, message_has("short16.idx.gz", "truncated"));
  BOOST_CHECK_EXCEPTION(read_idx(put(dir, "cap64.idx", idx({2}, bytes(16, 0), 0x0E)), 15),
                        input_error, message_has("cap64.idx", "limit of 15"));
}

// load_mnist reads unsigned bytes only: a f32 image file is named, not misread.
BOOST_AUTO_TEST_CASE(load_mnist_wants_bytes) {
  temp_dir dir;
  put(dir, "train-images-idx3-ubyte", idx({1, 1, 1}, {0x3f, 0xc0, 0, 0}, 0x0D));
  put(dir, "train-labels-idx1-ubyte", idx({1}, {3}));
  BOOST_CHECK_EXCEPTION(load_mnist(dir.path(), true), input_error,
                        message_has("train-images-idx3-ubyte", "f32", "unsigned bytes"));
}
