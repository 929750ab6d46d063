#define BOOST_TEST_DYN_LINK
#define BOOST_TEST_MODULE io_labeled_arrays
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "runtime/error.hpp"
#include "runtime/io/labeled_arrays.hpp"
#include "runtime/io/npy.hpp"
#include "runtime/io/npz.hpp"
#include "runtime/io/safetensors.hpp"
#include "temp_dir.hpp"

using namespace troupe::runtime;
using troupe::test::message_has;
using troupe::test::temp_dir;
using troupe::test::write_plain;
using named = std::vector<std::pair<std::string, tensor>>;
namespace fs = std::filesystem;

namespace {

/// Rows [first, first + n) of a rule: x[r] = (r, r / 2, -r) as f64, y[r] = r % 20 as i64.
named rule(std::int64_t first, std::int64_t n, const std::string& xn = "x",
           const std::string& yn = "y") {
  std::vector<double> x;
  std::vector<std::int64_t> y;
  for (std::int64_t r = first; r < first + n; ++r) {
    x.insert(x.end(), {double(r), double(r) / 2, -double(r)});
    y.push_back(r % 20);
  }
  return {{xn, tensor::from_vector<double>({n, 3}, x)},
          {yn, tensor::from_vector<std::int64_t>({n}, y)}};
}

void check_rule(const labeled_arrays& a, std::int64_t n) {
  BOOST_TEST((a.x.type() == dtype::f32));
  BOOST_TEST((a.x.shape() == shape_t{n, 3}));
  BOOST_TEST((a.y.type() == dtype::i32));
  BOOST_TEST((a.y.shape() == shape_t{n}));
  for (std::int64_t r = 0; r < n; ++r) {
    BOOST_TEST(a.x.data<float>()[3 * r + 1] == float(r) / 2);
    BOOST_TEST(a.y.data<std::int32_t>()[r] == r % 20);
  }
}

void put_text(const fs::path& p, const std::string& s) {
  write_plain<char>(p, s);
}

/// An IDX image: magic 0x0000 TT NN, big-endian dims, then `data`.
std::vector<unsigned char> idx(std::vector<std::uint32_t> dims, std::vector<unsigned char> data,
                               unsigned char type = 0x08) {
  std::vector<unsigned char> b{0, 0, type, static_cast<unsigned char>(dims.size())};
  for (auto d : dims)
    for (int s = 24; s >= 0; s -= 8)
      b.push_back(static_cast<unsigned char>(d >> s));
  b.insert(b.end(), data.begin(), data.end());
  return b;
}

} // namespace

// .npz and .safetensors holding the same arrays give bitwise the same result, with
// f64 inputs narrowed to f32 and i64 labels to i32.
BOOST_AUTO_TEST_CASE(npz_and_safetensors_agree) {
  temp_dir dir;
  write_npz(dir / "d.npz", rule(0, 50), true);
  write_safetensors(dir / "d.safetensors", rule(0, 50));
  auto a = read_labeled_arrays(dir / "d.npz", {});
  auto b = read_labeled_arrays(dir / "d.safetensors", {});
  check_rule(a, 50);
  BOOST_TEST(bitwise_equal(a.x, b.x));
  BOOST_TEST(bitwise_equal(a.y, b.y));
  BOOST_TEST(a.source == "d.npz (x, y)");
  // Names given by the caller.
  write_npz(dir / "n.npz", rule(0, 5, "inputs", "targets"));
  check_rule(read_labeled_arrays(dir / "n.npz", {"inputs", "targets"}), 5);
}

BOOST_AUTO_TEST_CASE(csv_features_and_target) {
  temp_dir dir;
  put_text(dir / "c.csv", "f1,label,f2\n1,3,0.5\n2,4,-1\n");
  auto a = read_labeled_arrays(dir / "c.csv", {"", "label"});
  BOOST_TEST((a.x.shape() == shape_t{2, 2}));
  BOOST_TEST((std::vector<float>(a.x.values<float>().begin(), a.x.values<float>().end()) ==
              std::vector<float>{1, 0.5f, 2, -1}));
  BOOST_TEST((a.y.type() == dtype::i32));
  BOOST_TEST(a.y.data<std::int32_t>()[1] == 4);
  // A real-valued target.
  auto r = read_labeled_arrays(dir / "c.csv", {"", "f2"});
  BOOST_TEST((r.y.type() == dtype::f32));
  BOOST_TEST(r.y.data<float>()[1] == -1.0f);
  BOOST_CHECK_EXCEPTION(read_labeled_arrays(dir / "c.csv", {"", "price"}), input_error,
                        message_has("c.csv", "no column 'price'"));
}

// MNIST's layout, any element type: the split picks train* or t10k*.
BOOST_AUTO_TEST_CASE(idx_pair_directory) {
  temp_dir dir;
  write_plain<unsigned char>(dir / "train-images-idx3-ubyte", idx({2, 1, 2}, {1, 2, 3, 4}));
  write_plain<unsigned char>(dir / "train-labels-idx1-ubyte", idx({2}, {7, 9}));
  write_plain<unsigned char>(dir / "t10k-images-idx3-ubyte", idx({1, 1, 1}, {0, 5}, 0x0B));
  write_plain<unsigned char>(dir / "t10k-labels-idx1-ubyte", idx({1}, {2}));
  auto a = read_labeled_arrays(dir.path(), {});
  BOOST_TEST((a.x.type() == dtype::u8));
  BOOST_TEST((a.x.shape() == shape_t{2, 1, 2}));
  BOOST_TEST((a.y.type() == dtype::i32));
  BOOST_TEST(a.y.data<std::int32_t>()[1] == 9);
  auto t = read_labeled_arrays(dir.path(), {}, false);
  BOOST_TEST((t.x.type() == dtype::i32)); // i16 widened
  BOOST_TEST(t.x.data<std::int32_t>()[0] == 5);
  // A lone unprefixed pair is training data only.
  temp_dir lone;
  write_plain<unsigned char>(lone / "images.idx", idx({1, 2}, {1, 2}));
  write_plain<unsigned char>(lone / "labels.idx", idx({1}, {0}));
  BOOST_TEST(read_labeled_arrays(lone.path(), {}).x.dim(1) == 2);
  BOOST_CHECK_EXCEPTION(read_labeled_arrays(lone.path(), {}, false), input_error,
                        message_has("0 IDX images files for the test split"));
  BOOST_CHECK_EXCEPTION(read_labeled_arrays(lone / "images.idx", {}), input_error,
                        message_has("images.idx", "IDX file holds one array"));
}

// Shards are read in name order and concatenated.
BOOST_AUTO_TEST_CASE(directory_of_shards) {
  temp_dir dir;
  write_npz(dir / "part-2.npz", rule(30, 20));
  write_npz(dir / "part-0.npz", rule(0, 10), true);
  write_npz(dir / "part-1.npz", rule(10, 20));
  write_plain<char>(dir / ".hidden", std::string{"ignored"});
  auto a = read_labeled_arrays(dir.path(), {});
  check_rule(a, 50);
  BOOST_TEST(a.source.find("3 .npz shards") != std::string::npos);
  // CSV shards: one all-integer target and one real: the column is real-valued.
  temp_dir csv;
  put_text(csv / "a.csv", "x,y\n1,2\n");
  put_text(csv / "b.csv", "x,y\n3,0.5\n");
  auto c = read_labeled_arrays(csv.path(), {"", "y"});
  BOOST_TEST((c.y.type() == dtype::f32));
  BOOST_TEST(c.y.data<float>()[0] == 2.0f);
  BOOST_TEST(c.y.data<float>()[1] == 0.5f);
}

BOOST_AUTO_TEST_CASE(rejects_shards_that_differ) {
  temp_dir dir;
  write_npz(dir / "a.npz", rule(0, 4));
  named wide = {{"x", tensor::zeros(dtype::f32, {2, 4})}, {"y", tensor::zeros(dtype::i32, {2})}};
  write_npz(dir / "b.npz", wide);
  BOOST_CHECK_EXCEPTION(read_labeled_arrays(dir.path(), {}), input_error,
                        message_has("b.npz", "x rows are f32 [4]", "'a.npz' are f32 [3]"));
  fs::remove(dir / "b.npz");
  put_text(dir / "b.csv", "x,y\n1,2\n");
  BOOST_CHECK_EXCEPTION(read_labeled_arrays(dir.path(), {}), input_error,
                        message_has("b.csv", "shard is CSV", "'a.npz' is .npz"));
  temp_dir csv;
  put_text(csv / "a.csv", "x,y\n1,2\n");
  put_text(csv / "b.csv", "y,x\n1,2\n");
  BOOST_CHECK_EXCEPTION(read_labeled_arrays(csv.path(), {"", "y"}), input_error,
                        message_has("b.csv", "CSV header differs"));
  temp_dir empty;
  BOOST_CHECK_EXCEPTION(read_labeled_arrays(empty.path(), {}), input_error,
                        message_has("empty directory"));
}

BOOST_AUTO_TEST_CASE(rejects_one_array_and_unknown_formats) {
  temp_dir dir;
  write_npy(dir / "x.npy", tensor::zeros(dtype::f32, {2, 2}));
  BOOST_CHECK_EXCEPTION(read_labeled_arrays(dir / "x.npy", {}), input_error,
                        message_has("x.npy", "holds one array", "np.savez"));
  put_text(dir / "data.txt", "1,2\n");
  BOOST_CHECK_EXCEPTION(read_labeled_arrays(dir / "data.txt", {}), input_error,
                        message_has("data.txt", "wrong magic", ".csv suffix"));
  BOOST_CHECK_EXCEPTION(read_labeled_arrays(dir / "nothing.npz", {}), input_error,
                        message_has("nothing.npz", "no such file"));
}

BOOST_AUTO_TEST_CASE(rejects_missing_array) {
  temp_dir dir;
  write_npz(dir / "d.npz", rule(0, 3));
  BOOST_CHECK_EXCEPTION(read_labeled_arrays(dir / "d.npz", {"x", "labels"}), input_error,
                        message_has("d.npz", "no array 'labels'", "'x', 'y'"));
  write_safetensors(dir / "d.safetensors", rule(0, 3));
  BOOST_CHECK_EXCEPTION(read_labeled_arrays(dir / "d.safetensors", {"inputs", "y"}), input_error,
                        message_has("d.safetensors", "no array 'inputs'", "'x', 'y'"));
}

BOOST_AUTO_TEST_CASE(rejects_row_count_mismatch) {
  temp_dir dir;
  auto r = rule(0, 4);
  r[1].second = tensor::zeros(dtype::i64, {3});
  write_npz(dir / "d.npz", r);
  BOOST_CHECK_EXCEPTION(read_labeled_arrays(dir / "d.npz", {}), input_error,
                        message_has("d.npz", "array 'x' has 4 rows but array 'y' has 3"));
}

BOOST_AUTO_TEST_CASE(rejects_empty) {
  temp_dir dir;
  named e = {{"x", tensor::empty(dtype::f32, {0, 3})}, {"y", tensor::empty(dtype::i32, {0})}};
  write_npz(dir / "e.npz", e);
  BOOST_CHECK_EXCEPTION(read_labeled_arrays(dir / "e.npz", {}), input_error,
                        message_has("e.npz", "empty"));
}

BOOST_AUTO_TEST_CASE(rejects_nan_and_inf) {
  temp_dir dir;
  auto r = rule(0, 4);
  r[0].second.mutable_data<double>()[7] = std::nan("");
  write_npz(dir / "nan.npz", r);
  BOOST_CHECK_EXCEPTION(read_labeled_arrays(dir / "nan.npz", {}), input_error,
                        message_has("nan.npz", "array 'x'", "element 7 (row 2) is NaN"));
  // Finite in f64, infinite in f32.
  r = rule(0, 4);
  r[0].second.mutable_data<double>()[0] = 1e300;
  write_npz(dir / "big.npz", r);
  BOOST_CHECK_EXCEPTION(
      read_labeled_arrays(dir / "big.npz", {}), input_error,
      message_has("big.npz", "array 'x'", "element 0 (row 0) is infinite in f32"));
  named reg = {
      {"x", tensor::zeros(dtype::f32, {2, 1})},
      {"y", tensor::from_vector<float>({2, 1}, {1, std::numeric_limits<float>::infinity()})}};
  write_safetensors(dir / "inf.safetensors", reg);
  BOOST_CHECK_EXCEPTION(read_labeled_arrays(dir / "inf.safetensors", {}), input_error,
                        message_has("inf.safetensors", "array 'y'", "row 1) is infinite"));
}

BOOST_AUTO_TEST_CASE(rejects_labels_that_do_not_fit) {
  temp_dir dir;
  auto r = rule(0, 2);
  r[1].second.mutable_data<std::int64_t>()[1] = std::int64_t{1} << 40;
  write_npz(dir / "wide.npz", r);
  BOOST_CHECK_EXCEPTION(read_labeled_arrays(dir / "wide.npz", {}), input_error,
                        message_has("wide.npz", "array 'y'", "1099511627776 does not fit in i32"));
  named twocol = {{"x", tensor::zeros(dtype::f32, {2, 1})},
                  {"y", tensor::zeros(dtype::i32, {2, 2})}};
  write_npz(dir / "twocol.npz", twocol);
  BOOST_CHECK_EXCEPTION(read_labeled_arrays(dir / "twocol.npz", {}), input_error,
                        message_has("twocol.npz", "array 'y' has shape [2, 2]", "integer labels"));
}

// The readers' own errors come through with the file's name.
BOOST_AUTO_TEST_CASE(passes_on_reader_errors) {
  temp_dir dir;
  put_text(dir / "bad.csv", "a,y\n1,2\n3,x\n");
  BOOST_CHECK_EXCEPTION(read_labeled_arrays(dir / "bad.csv", {"", "y"}), input_error,
                        message_has("bad.csv:3", "column 'y'", "'x' is not a number"));
  write_npz(dir / "ok.npz", rule(0, 3));
  auto b = troupe::test::read_plain(dir / "ok.npz");
  b.resize(b.size() - 30);
  write_plain<unsigned char>(dir / "cut.npz", b);
  BOOST_CHECK_EXCEPTION(read_labeled_arrays(dir / "cut.npz", {}), input_error,
                        message_has("cut.npz", "truncated"));
}
