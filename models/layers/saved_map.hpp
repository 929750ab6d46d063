#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "models/layers/layer.hpp"

namespace troupe::models {

/// Activations a layer saved in forward, keyed by micro-batch id.
///
/// A pipeline stage holds only a handful of micro-batches in flight, so a flat
/// vector searched linearly beats a hash map (no node allocations per forward)
/// and keeps the hot path allocation-free once it has grown.
template <class T>
class saved_map {
public:
  /// Saves `value` for `mb`, replacing what an earlier forward of the same id
  /// left behind (a re-run after an aborted step).
  void put(micro_batch_id mb, T value) {
    for (auto& [id, v] : items_)
      if (id == mb) {
        v = std::move(value);
        return;
      }
    items_.emplace_back(mb, std::move(value));
  }

  /// Removes and returns what was saved for `mb`; throws std::logic_error
  /// naming `who` when backward comes without a matching forward.
  T take(micro_batch_id mb, std::string_view who) {
    for (std::size_t i = 0; i < items_.size(); ++i)
      if (items_[i].first == mb) {
        T v = std::move(items_[i].second);
        if (i + 1 != items_.size())
          items_[i] = std::move(items_.back());
        items_.pop_back();
        return v;
      }
    throw std::logic_error(std::string{who} + ": backward for micro-batch " + std::to_string(mb) +
                           " without a saved training forward");
  }

  void clear() noexcept { items_.clear(); }
  bool empty() const noexcept { return items_.empty(); }
  std::size_t size() const noexcept { return items_.size(); }

  /// Sum of bytes(value) over every saved micro-batch.
  template <class F>
  std::size_t total(F&& bytes) const {
    std::size_t n = 0;
    for (const auto& item : items_)
      n += bytes(item.second);
    return n;
  }

private:
  std::vector<std::pair<micro_batch_id, T>> items_;
};

} // namespace troupe::models
