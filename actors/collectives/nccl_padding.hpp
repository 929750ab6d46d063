#pragma once

// Padding for NCCL's reduce-scatter and all-gather, kept free of CUDA so that
// the CPU tests cover it.
//
// NCCL moves the same element count for every rank (ncclReduceScatter's
// recvcount, ncclAllGather's sendcount). troupe's protocol does not: a
// reduce-scatter hands rank r chunk r of collectives::partition(numel, n)
// (the first numel % n chunks one element longer), and an all-gather
// concatenates tensors of any size. So every rank's chunk travels in a slot of
// `slot` elements (the largest chunk), zero-filled behind the chunk, and the
// receiver drops the padding again. Padding costs at most (n - 1) elements per
// slot row; when every chunk fills its slot the layout is the identity and no
// packing copy is needed.

#include <cstddef>
#include <cstdint>
#include <vector>

namespace troupe::actors::nccl {

/// Chunk r of a buffer: where it starts unpadded (`offset`, chunks end to end
/// in rank order) and padded (`slot_offset` = r * slot), and its length.
struct padded_chunk {
  std::int64_t offset = 0;
  std::int64_t slot_offset = 0;
  std::int64_t count = 0;
  friend bool operator==(const padded_chunk&, const padded_chunk&) = default;
};

/// Where every rank's chunk sits in the unpadded and in the padded buffer.
struct padded_layout {
  std::int64_t slot = 0;            ///< elements per rank in the padded buffer
  std::vector<padded_chunk> chunks; ///< one per rank, in rank order

  /// Elements of the padded buffer: slot x ranks.
  std::int64_t padded_numel() const noexcept {
    return slot * static_cast<std::int64_t>(chunks.size());
  }
  /// Elements of the unpadded buffer: the sum of the chunks.
  std::int64_t numel() const noexcept;
  /// True when every chunk fills its slot (padded and unpadded buffers are
  /// the same bytes, so no packing is needed).
  bool is_identity() const noexcept;
};

/// Chunks of counts[r] elements laid end to end, each in a slot of
/// max(counts) elements. Throws std::invalid_argument for no ranks or a
/// negative count.
padded_layout pad_counts(const std::vector<std::int64_t>& counts);

/// The reduce-scatter layout over n ranks: the chunks of
/// collectives::partition(numel, n), the same cut the actor backend uses.
padded_layout pad_partition(std::int64_t numel, int n);

/// Copies `src` (layout.numel() elements of `elem_size` bytes) into `dst`
/// (layout.padded_numel() elements), zero-filling the padding.
void pack(const padded_layout& layout, const void* src, void* dst, std::size_t elem_size);

/// The inverse of pack: copies each chunk out of its slot of `src` into `dst`.
void unpack(const padded_layout& layout, const void* src, void* dst, std::size_t elem_size);

} // namespace troupe::actors::nccl
