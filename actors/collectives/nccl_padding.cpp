#include "actors/collectives/nccl_padding.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

#include "actors/plan/collective_algorithms.hpp"

namespace troupe::actors::nccl {

std::int64_t padded_layout::numel() const noexcept {
  std::int64_t n = 0;
  for (const auto& c : chunks)
    n += c.count;
  return n;
}

bool padded_layout::is_identity() const noexcept {
  return std::all_of(chunks.begin(), chunks.end(), [this](const padded_chunk& c) {
    return c.count == slot && c.offset == c.slot_offset;
  });
}

padded_layout pad_counts(const std::vector<std::int64_t>& counts) {
  if (counts.empty())
    throw std::invalid_argument("pad_counts: no ranks");
  padded_layout l;
  for (auto c : counts) {
    if (c < 0)
      throw std::invalid_argument("pad_counts: negative count " + std::to_string(c));
    l.slot = std::max(l.slot, c);
  }
  std::int64_t offset = 0;
  for (std::size_t r = 0; r < counts.size(); ++r) {
    l.chunks.push_back(padded_chunk{offset, static_cast<std::int64_t>(r) * l.slot, counts[r]});
    offset += counts[r];
  }
  return l;
}

padded_layout pad_partition(std::int64_t numel, int n) {
  std::vector<std::int64_t> counts;
  for (const auto& c : collectives::partition(numel, n))
    counts.push_back(c.count);
  return pad_counts(counts);
}

void pack(const padded_layout& layout, const void* src, void* dst, std::size_t elem_size) {
  const auto* in = static_cast<const unsigned char*>(src);
  auto* out = static_cast<unsigned char*>(dst);
  auto slot_bytes = static_cast<std::size_t>(layout.slot) * elem_size;
  for (const auto& c : layout.chunks) {
    auto bytes = static_cast<std::size_t>(c.count) * elem_size;
    auto* s = out + static_cast<std::size_t>(c.slot_offset) * elem_size;
    if (bytes > 0)
      std::memcpy(s, in + static_cast<std::size_t>(c.offset) * elem_size, bytes);
    if (slot_bytes > bytes)
      std::memset(s + bytes, 0, slot_bytes - bytes);
  }
}

void unpack(const padded_layout& layout, const void* src, void* dst, std::size_t elem_size) {
  const auto* in = static_cast<const unsigned char*>(src);
  auto* out = static_cast<unsigned char*>(dst);
  for (const auto& c : layout.chunks) {
    auto bytes = static_cast<std::size_t>(c.count) * elem_size;
    if (bytes > 0)
      std::memcpy(out + static_cast<std::size_t>(c.offset) * elem_size,
                  in + static_cast<std::size_t>(c.slot_offset) * elem_size, bytes);
  }
}

} // namespace troupe::actors::nccl
