#include "runtime/io/text_dataset.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <unordered_map>

#include "runtime/error.hpp"
#include "runtime/io/file_util.hpp"
#include "runtime/rng.hpp"

namespace troupe::runtime {

namespace {

// Texts for a character model are small; a generous cap keeps a wrong path
// (a disk image) from exhausting memory.
constexpr std::size_t max_text_bytes = std::size_t{1} << 31;

std::string byte_name(std::uint8_t b) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "0x%02x", static_cast<unsigned>(b));
  return buf;
}

} // namespace

text_dataset text_dataset::load(const std::filesystem::path& path, std::int64_t context,
                                double heldout_fraction) {
  std::vector<std::byte> bytes;
  try {
    bytes = read_file(path, max_text_bytes);
  } catch (const input_error& e) {
    throw input_error(std::string{"text file: "} + e.what()); // e names the path
  }
  return from_bytes(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()),
                    context, heldout_fraction, "text file '" + path.string() + "'");
}

text_dataset text_dataset::from_bytes(std::string_view text, std::int64_t context,
                                      double heldout_fraction, const std::string& source) {
  if (context < 1)
    throw std::invalid_argument("text_dataset: context must be >= 1, got " +
                                std::to_string(context));
  if (!(heldout_fraction > 0.0 && heldout_fraction < 1.0))
    throw std::invalid_argument("text_dataset: heldout_fraction must be in (0, 1), got " +
                                std::to_string(heldout_fraction));
  if (text.starts_with("\xEF\xBB\xBF"))
    text.remove_prefix(3);
  if (text.empty())
    throw input_error(source + " is empty");

  text_dataset d;
  d.context_ = context;
  bool seen[256] = {};
  for (char c : text)
    seen[static_cast<std::uint8_t>(c)] = true;
  std::fill(std::begin(d.id_of_), std::end(d.id_of_), -1);
  for (int b = 0; b < 256; ++b)
    if (seen[b]) {
      d.id_of_[b] = static_cast<std::int32_t>(d.vocab_.size());
      d.vocab_.push_back(static_cast<std::uint8_t>(b));
    }
  d.ids_.reserve(text.size());
  for (char c : text)
    d.ids_.push_back(d.id_of_[static_cast<std::uint8_t>(c)]);

  const auto n = static_cast<std::int64_t>(d.ids_.size());
  const auto heldout =
      static_cast<std::int64_t>(std::llround(static_cast<double>(n) * heldout_fraction));
  d.train_size_ = n - heldout;
  if (heldout < context + 1 || d.train_size_ < context + 1)
    throw input_error(source + " is too short for context " + std::to_string(context) + ": " +
                      std::to_string(n) + " bytes give " + std::to_string(d.train_size_) +
                      " for training and " + std::to_string(heldout) +
                      " held out; each needs at least context + 1");
  return d;
}

std::vector<std::int32_t> text_dataset::encode(std::string_view text) const {
  std::vector<std::int32_t> out;
  out.reserve(text.size());
  for (char c : text) {
    const auto b = static_cast<std::uint8_t>(c);
    if (id_of_[b] < 0)
      throw input_error("text_dataset: byte " + byte_name(b) + " is not in the vocabulary");
    out.push_back(id_of_[b]);
  }
  return out;
}

std::string text_dataset::decode(std::span<const std::int32_t> ids) const {
  std::string out;
  out.reserve(ids.size());
  for (std::int32_t id : ids) {
    if (id < 0 || id >= vocab_size())
      throw std::invalid_argument("text_dataset: id " + std::to_string(id) + " outside [0, " +
                                  std::to_string(vocab_size()) + ")");
    out.push_back(static_cast<char>(vocab_[static_cast<std::size_t>(id)]));
  }
  return out;
}

std::span<const std::int32_t> text_dataset::ids(text_split s) const noexcept {
  std::span<const std::int32_t> all(ids_);
  return s == text_split::train ? all.first(static_cast<std::size_t>(train_size_))
                                : all.subspan(static_cast<std::size_t>(train_size_));
}

std::int64_t text_dataset::windows(text_split s) const noexcept {
  return static_cast<std::int64_t>(ids(s).size()) - context_;
}

void text_dataset::window(text_split s, std::int64_t start, std::int32_t* input,
                          std::int32_t* target) const {
  if (start < 0 || start >= windows(s))
    throw std::out_of_range("text_dataset: window start " + std::to_string(start) +
                            " outside [0, " + std::to_string(windows(s)) + ")");
  const std::int32_t* p = ids(s).data() + start;
  std::copy(p, p + context_, input);
  std::copy(p + 1, p + context_ + 1, target);
}

text_dataset::batch text_dataset::make_batch(text_split s,
                                             std::span<const std::int64_t> starts) const {
  const auto n = static_cast<std::int64_t>(starts.size());
  batch b{tensor::empty(dtype::i32, {n, context_}), tensor::empty(dtype::i32, {n, context_})};
  auto* in = b.input.mutable_data<std::int32_t>();
  auto* tg = b.target.mutable_data<std::int32_t>();
  for (std::int64_t i = 0; i < n; ++i)
    window(s, starts[static_cast<std::size_t>(i)], in + i * context_, tg + i * context_);
  return b;
}

text_dataset::batch text_dataset::sample_train_batch(std::int64_t n, std::uint64_t seed,
                                                     std::int64_t step) const {
  if (n < 0 || step < 0)
    throw std::invalid_argument("text_dataset: negative batch size or step");
  rng_stream rng(seed, hash_name("text_dataset.train_windows"),
                 static_cast<std::uint64_t>(step) * static_cast<std::uint64_t>(n));
  std::vector<std::int64_t> starts(static_cast<std::size_t>(n));
  for (auto& s : starts)
    s = static_cast<std::int64_t>(
        rng.next_below(static_cast<std::uint64_t>(windows(text_split::train))));
  return make_batch(text_split::train, starts);
}

std::vector<std::int64_t> text_dataset::window_starts(text_split s) const {
  std::vector<std::int64_t> starts;
  for (std::int64_t w = 0; w < windows(s); w += context_)
    starts.push_back(w);
  return starts;
}

std::vector<std::int64_t> text_dataset::heldout_starts() const {
  return window_starts(text_split::heldout);
}

double unigram_entropy_bits(std::span<const std::int32_t> ids) {
  if (ids.empty())
    return 0.0;
  std::unordered_map<std::int32_t, std::int64_t> counts;
  for (std::int32_t id : ids) {
    if (id < 0)
      throw std::invalid_argument("unigram_entropy_bits: negative id " + std::to_string(id));
    ++counts[id];
  }
  const auto n = static_cast<double>(ids.size());
  double h = 0.0;
  for (const auto& [id, c] : counts) {
    const double p = static_cast<double>(c) / n;
    h -= p * std::log2(p);
  }
  return h;
}

} // namespace troupe::runtime
