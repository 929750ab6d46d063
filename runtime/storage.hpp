#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "runtime/device.hpp"

namespace troupe::runtime {

/// A block of 64-byte aligned memory owned through std::shared_ptr. Tensors
/// share storages; copying a tensor never copies its bytes.
///
/// Large CPU blocks are recycled: a training step allocates the same
/// activation and gradient sizes at every step, and glibc serves blocks above
/// its mmap threshold with fresh mmap/munmap pairs, so each step would
/// page-fault and zero its big tensors again (measured: ~1,200 faults per step
/// for the zoo cnn at batch 64). A freed block of at least
/// storage_cache_min_bytes goes into a small process-wide cache, keyed by its
/// exact (rounded) size, from which the next allocation of that size is served
/// (like PyTorch's caching allocators). The cache is thread-safe (freed on one
/// thread, reused on another), never holds more than its limit (default
/// storage_cache_default_limit; blocks of other sizes are evicted first, then
/// the block is simply freed), and never changes what allocate() promises:
/// the contents of a new storage are unspecified either way.
class storage {
public:
  static constexpr std::size_t alignment = 64;

  /// Allocates `bytes` bytes (uninitialised) on `dev`. Only CPU memory is
  /// allocated here; CUDA memory belongs to kernels/cuda.
  static std::shared_ptr<storage> allocate(std::size_t bytes, device dev = device::cpu());

  ~storage();
  storage(const storage&) = delete;
  storage& operator=(const storage&) = delete;

  void* data() noexcept { return data_; }
  const void* data() const noexcept { return data_; }
  std::size_t size_bytes() const noexcept { return size_; }
  device where() const noexcept { return device_; }

private:
  storage(void* data, std::size_t size, device dev) noexcept
    : data_(data), size_(size), device_(dev) {}
  void* data_;
  std::size_t size_;
  device device_;
};

/// Blocks smaller than this go straight back to malloc (which caches them well).
inline constexpr std::size_t storage_cache_min_bytes = std::size_t{64} << 10;
/// Default cap on the bytes the storage cache holds.
inline constexpr std::size_t storage_cache_default_limit = std::size_t{256} << 20;

/// Counters of the storage cache (tests, benchmarks, diagnostics).
struct storage_cache_stats {
  std::uint64_t hits = 0;         ///< allocations served from the cache
  std::uint64_t misses = 0;       ///< large allocations that went to the system
  std::size_t cached_bytes = 0;   ///< bytes held right now
  std::size_t limit_bytes = 0;
};
storage_cache_stats storage_cache_statistics();

/// Sets the cache's cap (0 turns caching off); frees blocks above the new cap.
void set_storage_cache_limit(std::size_t bytes);

/// Frees every cached block (e.g. before handing memory back between jobs).
void release_storage_cache();

} // namespace troupe::runtime
