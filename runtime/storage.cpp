#include "runtime/storage.hpp"

#include <cstdlib>
#include <map>
#include <mutex>
#include <new>
#include <stdexcept>
#include <vector>

namespace troupe::runtime {

namespace {

/// The recycled large blocks (see storage.hpp), by rounded size.
class block_cache {
public:
  /// A cached block of exactly `rounded` bytes, or nullptr.
  void* take(std::size_t rounded) {
    std::lock_guard lock{mutex_};
    auto it = free_.find(rounded);
    if (it == free_.end() || it->second.empty()) {
      ++misses_;
      return nullptr;
    }
    void* p = it->second.back();
    it->second.pop_back();
    if (it->second.empty())
      free_.erase(it);
    cached_ -= rounded;
    ++hits_;
    return p;
  }

  /// Keeps `p` for reuse, or frees it when it does not fit under the limit.
  void give(void* p, std::size_t rounded) {
    std::vector<void*> evicted;
    {
      std::lock_guard lock{mutex_};
      if (rounded <= limit_) {
        // Make room by dropping blocks of other sizes: the sizes a program
        // uses now are the ones worth keeping.
        for (auto it = free_.begin(); cached_ + rounded > limit_ && it != free_.end();) {
          if (it->first == rounded) {
            ++it;
            continue;
          }
          while (!it->second.empty() && cached_ + rounded > limit_) {
            evicted.push_back(it->second.back());
            it->second.pop_back();
            cached_ -= it->first;
          }
          it = it->second.empty() ? free_.erase(it) : std::next(it);
        }
        if (cached_ + rounded <= limit_) {
          free_[rounded].push_back(p);
          cached_ += rounded;
          p = nullptr;
        }
      }
    }
    release(evicted);
    std::free(p);
  }

  void set_limit(std::size_t bytes) {
    std::vector<void*> evicted;
    {
      std::lock_guard lock{mutex_};
      limit_ = bytes;
      for (auto it = free_.begin(); cached_ > limit_ && it != free_.end();) {
        while (!it->second.empty() && cached_ > limit_) {
          evicted.push_back(it->second.back());
          it->second.pop_back();
          cached_ -= it->first;
        }
        it = it->second.empty() ? free_.erase(it) : std::next(it);
      }
    }
    release(evicted);
  }

  storage_cache_stats stats() {
    std::lock_guard lock{mutex_};
    return {hits_, misses_, cached_, limit_};
  }

private:
  static void release(std::vector<void*>& blocks) {
    for (void* b : blocks)
      std::free(b);
    blocks.clear();
  }

  std::mutex mutex_;
  std::map<std::size_t, std::vector<void*>> free_;
  std::size_t cached_ = 0;
  std::size_t limit_ = storage_cache_default_limit;
  std::uint64_t hits_ = 0, misses_ = 0;
};

/// Never destroyed: storages held by other static objects may be freed after
/// this translation unit's statics are gone. The blocks stay reachable, so leak
/// checkers do not report them.
block_cache& cache() {
  static auto* c = new block_cache;
  return *c;
}

std::size_t rounded_size(std::size_t bytes) {
  // aligned_alloc needs a size that is a multiple of the alignment.
  std::size_t r = (bytes + storage::alignment - 1) / storage::alignment * storage::alignment;
  return r == 0 ? storage::alignment : r;
}

} // namespace

std::shared_ptr<storage> storage::allocate(std::size_t bytes, device dev) {
  if (!dev.is_cpu())
    throw std::invalid_argument("storage::allocate: only CPU memory is allocated here, not " +
                                to_string(dev));
  const std::size_t rounded = rounded_size(bytes);
  void* p = rounded >= storage_cache_min_bytes ? cache().take(rounded) : nullptr;
  if (p == nullptr)
    p = std::aligned_alloc(alignment, rounded);
  if (p == nullptr)
    throw std::bad_alloc{};
  std::unique_ptr<storage> owner;
  try {
    owner.reset(new storage(p, bytes, dev));
  } catch (...) {
    std::free(p);
    throw;
  }
  // Should the control block's allocation throw, `owner` still frees the block.
  return std::shared_ptr<storage>(std::move(owner));
}

storage::~storage() {
  const std::size_t rounded = rounded_size(size_);
  if (rounded >= storage_cache_min_bytes)
    cache().give(data_, rounded);
  else
    std::free(data_);
}

storage_cache_stats storage_cache_statistics() { return cache().stats(); }

void set_storage_cache_limit(std::size_t bytes) { cache().set_limit(bytes); }

void release_storage_cache() {
  auto& c = cache();
  auto limit = c.stats().limit_bytes;
  c.set_limit(0);
  c.set_limit(limit);
}

} // namespace troupe::runtime
