#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/tensor.hpp"

namespace troupe::runtime {

/// Which part of a text_dataset: the leading training part or the held-out tail.
enum class text_split { train, heldout };

/// A byte-level corpus for character language models (data/sherlock.txt).
///
/// The text is taken as bytes (a UTF-8 character outside ASCII becomes several
/// tokens, which keeps the vocabulary small and fixed and every file
/// encodable); a leading UTF-8 BOM is dropped. The vocabulary is the sorted
/// set of distinct bytes of the whole file, so id order does not depend on
/// where a byte first occurs and every held-out byte has an id. The held-out
/// part is the contiguous tail (the last `heldout_fraction` of the ids), so no
/// training window overlaps it.
///
/// A window of length T = context starting at s is input ids[s, s+T) and
/// target ids[s+1, s+T+1): the model predicts the next byte at every position,
/// so one window gives T predicted tokens (loss grad scale 1 / (batch * T)).
class text_dataset {
public:
  /// Reads a text file. Throws input_error naming the file when it is missing
  /// or unreadable, empty (after the BOM), or when the training part or the
  /// held-out tail has fewer than context + 1 bytes. Throws
  /// std::invalid_argument for context < 1 or heldout_fraction outside (0, 1).
  static text_dataset load(const std::filesystem::path& path, std::int64_t context,
                           double heldout_fraction = 0.1);
  /// The same from bytes in memory; `source` names them in errors.
  static text_dataset from_bytes(std::string_view text, std::int64_t context,
                                 double heldout_fraction, const std::string& source);

  std::int64_t context() const noexcept { return context_; }
  std::int64_t vocab_size() const noexcept { return static_cast<std::int64_t>(vocab_.size()); }
  /// id -> byte, ascending.
  const std::vector<std::uint8_t>& vocab() const noexcept { return vocab_; }
  /// The id of a byte, or -1 when the byte does not occur in the text.
  std::int32_t id_of(std::uint8_t byte) const noexcept { return id_of_[byte]; }
  /// Throws input_error naming the byte when it is not in the vocabulary.
  std::vector<std::int32_t> encode(std::string_view text) const;
  /// Throws std::invalid_argument for an id outside [0, vocab_size).
  std::string decode(std::span<const std::int32_t> ids) const;

  /// All ids of a split (train: the head, heldout: the tail).
  std::span<const std::int32_t> ids(text_split s) const noexcept;
  /// Number of window starts of a split: ids(s).size() - context.
  std::int64_t windows(text_split s) const noexcept;
  /// Writes the window at `start` (0 <= start < windows(s); otherwise
  /// std::out_of_range) as context input and context target ids.
  void window(text_split s, std::int64_t start, std::int32_t* input, std::int32_t* target) const;

  struct batch {
    tensor input;  ///< i32 [n, context]
    tensor target; ///< i32 [n, context], input shifted by one
  };
  /// The windows at `starts` of split `s`.
  batch make_batch(text_split s, std::span<const std::int64_t> starts) const;
  /// `n` training windows with uniformly drawn starts, from a counter-based
  /// stream keyed by (seed, step): the same for a given step whoever asks and
  /// whatever came before (resuming needs no sampler state).
  batch sample_train_batch(std::int64_t n, std::uint64_t seed, std::int64_t step) const;
  /// Starts 0, T, 2T, ... of the non-overlapping windows of a split: they
  /// predict every byte of the split after the first at most once (all but a
  /// final partial window).
  std::vector<std::int64_t> window_starts(text_split s) const;
  /// window_starts(text_split::heldout).
  std::vector<std::int64_t> heldout_starts() const;

private:
  text_dataset() = default;

  std::int64_t context_ = 0;
  std::vector<std::uint8_t> vocab_;
  std::int32_t id_of_[256] = {};
  std::vector<std::int32_t> ids_; // the whole text
  std::int64_t train_size_ = 0;   // ids_[0, train_size_) train, the rest held out
};

/// Entropy in bits of the empirical unigram distribution of `ids` (the loss of
/// the best context-free predictor: what a language model must beat). 0 for
/// empty input; ids must be >= 0 (std::invalid_argument otherwise).
double unigram_entropy_bits(std::span<const std::int32_t> ids);

} // namespace troupe::runtime
