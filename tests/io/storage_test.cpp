#define BOOST_TEST_DYN_LINK
#define BOOST_TEST_MODULE io_storage
#include <boost/test/unit_test.hpp>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

#include "runtime/storage.hpp"
#include "runtime/tensor.hpp"

using namespace troupe::runtime;

namespace {

/// Restores the default limit and empties the cache around each test.
struct fresh_cache {
  fresh_cache() { release_storage_cache(); set_storage_cache_limit(storage_cache_default_limit); }
  ~fresh_cache() { release_storage_cache(); set_storage_cache_limit(storage_cache_default_limit); }
};

constexpr std::size_t big = std::size_t{1} << 20;

} // namespace

BOOST_FIXTURE_TEST_CASE(large_blocks_are_reused, fresh_cache) {
  auto before = storage_cache_statistics();
  void* first = nullptr;
  {
    auto s = storage::allocate(big);
    first = s->data();
    std::memset(s->data(), 1, big);
  }
  BOOST_TEST(storage_cache_statistics().cached_bytes == big);
  auto s = storage::allocate(big);
  BOOST_TEST(s->data() == first);
  BOOST_TEST(reinterpret_cast<std::uintptr_t>(s->data()) % storage::alignment == 0);
  BOOST_TEST(s->size_bytes() == big);
  auto after = storage_cache_statistics();
  BOOST_TEST(after.hits == before.hits + 1);
  BOOST_TEST(after.cached_bytes == 0u);
}

BOOST_FIXTURE_TEST_CASE(small_blocks_and_other_sizes_are_not_served_from_it, fresh_cache) {
  { auto s = storage::allocate(1000); }
  BOOST_TEST(storage_cache_statistics().cached_bytes == 0u);
  { auto s = storage::allocate(big); }
  auto hits = storage_cache_statistics().hits;
  auto other = storage::allocate(big + 4096);
  BOOST_TEST(storage_cache_statistics().hits == hits);
  BOOST_TEST(other->size_bytes() == big + 4096);
}

BOOST_FIXTURE_TEST_CASE(the_limit_holds_and_evicts_other_sizes, fresh_cache) {
  set_storage_cache_limit(3 * big);
  {
    std::vector<std::shared_ptr<storage>> blocks;
    for (int i = 0; i < 5; ++i)
      blocks.push_back(storage::allocate(big));
  }
  BOOST_TEST(storage_cache_statistics().cached_bytes == 3 * big);
  { auto s = storage::allocate(2 * big); } // evicts two 1 MiB blocks to fit
  auto st = storage_cache_statistics();
  BOOST_TEST(st.cached_bytes <= 3 * big);
  BOOST_TEST(st.cached_bytes == 3 * big);
  set_storage_cache_limit(0);
  BOOST_TEST(storage_cache_statistics().cached_bytes == 0u);
  { auto s = storage::allocate(big); }
  BOOST_TEST(storage_cache_statistics().cached_bytes == 0u);
}

BOOST_FIXTURE_TEST_CASE(freed_and_reused_across_threads, fresh_cache) {
  // Boost.Test assertions are not thread-safe: threads only count mismatches.
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([t, &bad] {
      for (int i = 0; i < 200; ++i) {
        auto a = tensor::empty(dtype::f32, {256, 256 + t});
        auto* p = a.mutable_data<float>();
        p[0] = static_cast<float>(i);
        auto b = a; // freed by whichever copy goes last
        if (b.data<float>()[0] != static_cast<float>(i))
          ++bad;
      }
    });
  for (auto& th : threads)
    th.join();
  BOOST_TEST(bad.load() == 0);
  BOOST_TEST(storage_cache_statistics().cached_bytes <= storage_cache_default_limit);
}
