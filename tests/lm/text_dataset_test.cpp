// runtime::text_dataset: vocabulary (sorted distinct bytes, BOM stripped),
// encode/decode round trip, train/held-out split, windows with the target
// shifted by one, deterministic sampling, input errors naming the file, and
// unigram entropy. Also checks that data/sherlock.txt gives the vocabulary the
// zoo transformer is sized for.

#define BOOST_TEST_DYN_LINK
#define BOOST_TEST_MODULE lm_text_dataset
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <unistd.h>

#include "models/layers/model_spec.hpp"
#include "models/zoo.hpp"
#include "runtime/error.hpp"
#include "runtime/io/text_dataset.hpp"

using namespace troupe;
using runtime::text_dataset;
using runtime::text_split;
namespace fs = std::filesystem;

namespace {

struct temp_dir {
  fs::path path = fs::temp_directory_path() / ("troupe_lm_text_" + std::to_string(::getpid()));
  temp_dir() { fs::create_directories(path); }
  ~temp_dir() { fs::remove_all(path); }
  fs::path write(const std::string& name, const std::string& bytes) const {
    fs::path p = path / name;
    std::ofstream(p, std::ios::binary) << bytes;
    return p;
  }
};

/// Expects runtime::input_error whose message contains every part.
template <class F>
void expect_input_error(F&& f, std::initializer_list<std::string> parts) {
  try {
    f();
    BOOST_ERROR("no input_error");
  } catch (const runtime::input_error& e) {
    BOOST_TEST_MESSAGE("rejected: " << e.what());
    for (const auto& p : parts)
      BOOST_TEST(std::string(e.what()).find(p) != std::string::npos, e.what() << " lacks " << p);
  }
}

} // namespace

BOOST_AUTO_TEST_CASE(vocabulary_and_round_trip) {
  temp_dir dir;
  const std::string text = "hello world, hello caf\xC3\xA9!\nthe end.";
  auto d = text_dataset::load(dir.write("a.txt", "\xEF\xBB\xBF" + text), 4, 0.25);
  std::set<unsigned char> distinct(text.begin(), text.end());
  BOOST_TEST(d.vocab_size() == static_cast<std::int64_t>(distinct.size()));
  BOOST_TEST(std::is_sorted(d.vocab().begin(), d.vocab().end()));
  BOOST_TEST(d.id_of('\n') == 0);
  BOOST_TEST(d.id_of(0xEF) == -1); // the BOM is not text
  BOOST_TEST(d.id_of(0xA9) >= 0);
  BOOST_TEST(d.id_of(0xC3) == d.vocab_size() - 1); // the largest byte
  // Round trip of the whole text.
  std::vector<std::int32_t> all(d.ids(text_split::train).begin(), d.ids(text_split::train).end());
  all.insert(all.end(), d.ids(text_split::heldout).begin(), d.ids(text_split::heldout).end());
  BOOST_TEST(d.decode(all) == text);
  BOOST_TEST(d.encode(text) == all);
  BOOST_CHECK_THROW(d.encode("xyz"), runtime::input_error);
  std::vector<std::int32_t> bad = {0, static_cast<std::int32_t>(d.vocab_size())};
  BOOST_CHECK_THROW(d.decode(bad), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(split_and_windows) {
  std::string text;
  for (int i = 0; i < 100; ++i)
    text.push_back(static_cast<char>('a' + i % 26));
  auto d = text_dataset::from_bytes(text, 5, 0.1, "memory");
  BOOST_TEST(d.ids(text_split::train).size() == 90u);
  BOOST_TEST(d.ids(text_split::heldout).size() == 10u);
  BOOST_TEST(d.decode(d.ids(text_split::heldout)) == text.substr(90));
  BOOST_TEST(d.windows(text_split::train) == 85);
  BOOST_TEST(d.windows(text_split::heldout) == 5);
  std::vector<std::int64_t> starts = {0, 84, 7};
  auto b = d.make_batch(text_split::train, starts);
  BOOST_TEST(b.input.shape() == (runtime::shape_t{3, 5}));
  BOOST_TEST(b.target.shape() == (runtime::shape_t{3, 5}));
  auto in = b.input.values<std::int32_t>();
  auto tg = b.target.values<std::int32_t>();
  for (std::size_t r = 0; r < 3; ++r) {
    BOOST_TEST(d.decode(in.subspan(r * 5, 5)) ==
               text.substr(static_cast<std::size_t>(starts[r]), 5));
    BOOST_TEST(d.decode(tg.subspan(r * 5, 5)) ==
               text.substr(static_cast<std::size_t>(starts[r]) + 1, 5));
  }
  auto h = d.make_batch(text_split::heldout, std::vector<std::int64_t>{4});
  BOOST_TEST(d.decode(h.target.values<std::int32_t>()) == text.substr(95, 5));
  BOOST_CHECK_THROW(d.make_batch(text_split::train, std::vector<std::int64_t>{85}),
                    std::out_of_range);
  BOOST_CHECK_THROW(d.make_batch(text_split::heldout, std::vector<std::int64_t>{5}),
                    std::out_of_range);
  BOOST_TEST(d.heldout_starts() == (std::vector<std::int64_t>{0}));
  // Sampling depends only on (seed, step).
  auto s1 = d.sample_train_batch(16, 3, 7), s2 = d.sample_train_batch(16, 3, 7);
  auto s3 = d.sample_train_batch(16, 3, 8);
  BOOST_TEST(runtime::bitwise_equal(s1.input, s2.input));
  BOOST_TEST(!runtime::bitwise_equal(s1.input, s3.input));
}

BOOST_AUTO_TEST_CASE(errors_name_the_file) {
  temp_dir dir;
  const auto missing = dir.path / "nope.txt";
  expect_input_error([&] { text_dataset::load(missing, 4); }, {"nope.txt"});
  const auto empty = dir.write("empty.txt", "");
  expect_input_error([&] { text_dataset::load(empty, 4); }, {"empty.txt", "empty"});
  const auto bom = dir.write("bom.txt", "\xEF\xBB\xBF");
  expect_input_error([&] { text_dataset::load(bom, 4); }, {"bom.txt", "empty"});
  const auto tiny = dir.write("tiny.txt", std::string(40, 'x'));
  // 40 bytes, 10% held out = 4 < context + 1.
  expect_input_error([&] { text_dataset::load(tiny, 4); }, {"tiny.txt", "too short", "context 4"});
  BOOST_CHECK_NO_THROW(text_dataset::load(tiny, 4, 0.5));
  BOOST_CHECK_THROW(text_dataset::load(tiny, 0), std::invalid_argument);
  BOOST_CHECK_THROW(text_dataset::load(tiny, 4, 1.0), std::invalid_argument);
  expect_input_error([&] { text_dataset::load(dir.path, 4); }, {dir.path.string()});
}

BOOST_AUTO_TEST_CASE(unigram_entropy) {
  std::vector<std::int32_t> uniform = {0, 1, 2, 3, 3, 2, 1, 0};
  BOOST_TEST(std::abs(runtime::unigram_entropy_bits(uniform) - 2.0) < 1e-12);
  std::vector<std::int32_t> constant(10, 7);
  BOOST_TEST(runtime::unigram_entropy_bits(constant) == 0.0);
  BOOST_TEST(runtime::unigram_entropy_bits({}) == 0.0);
  std::vector<std::int32_t> skew = {0, 0, 0, 1};
  const double h = -(0.75 * std::log2(0.75) + 0.25 * std::log2(0.25));
  BOOST_TEST(std::abs(runtime::unigram_entropy_bits(skew) - h) < 1e-12);
  std::vector<std::int32_t> neg = {-1};
  BOOST_CHECK_THROW(runtime::unigram_entropy_bits(neg), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(sherlock_matches_the_zoo_transformer) {
  auto d = text_dataset::load(fs::path(TROUPE_SOURCE_DIR) / "data/sherlock.txt", 64);
  auto spec = models::zoo_model("transformer");
  BOOST_TEST(d.vocab_size() == models::output_shape(spec).back());
  BOOST_TEST(d.context() == spec.input_shape.at(0));
  const double h = runtime::unigram_entropy_bits(d.ids(text_split::train));
  BOOST_TEST_MESSAGE("sherlock: vocab " << d.vocab_size() << ", train unigram entropy " << h
                                        << " bits");
  BOOST_TEST(h > 4.0);
  BOOST_TEST(h < 5.0);
}
