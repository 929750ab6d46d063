#pragma once

// A CPU communicator with NCCL's semantics, for testing the NCCL rank actors
// (actors/collectives/nccl_group.hpp) without a GPU: the ranks' worker threads meet at
// every call (in call order, as NCCL's ranks do), each brings its bytes, and
// each computes its result from everyone's. A call blocks until all ranks
// arrive, as a NCCL kernel does, and gives up only on the abort flag or the
// timeout, as nccl_communicator does. Mismatched collectives at the same call
// (which NCCL would not notice) fail here.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "kernels/collective_communicator.hpp"

namespace troupe::testing {

using bytes = std::vector<unsigned char>;

/// Where the ranks of loopback groups meet; share one among a test's groups.
class loopback_hub {
public:
  std::string new_id() {
    std::lock_guard lock{mutex_};
    auto id = "loopback-" + std::to_string(next_id_++);
    id.resize(128, '\0');
    return id;
  }

  /// Rank `rank` of `size` brings `mine` to call `call` (of kind `tag`) of
  /// group `id`; fills `all` with every rank's bytes once all have come.
  std::string meet(const std::string& id, int size, int rank, std::uint64_t call, int tag,
                   bytes mine, std::vector<bytes>& all, const std::atomic<bool>* abort,
                   std::chrono::milliseconds timeout) {
    std::unique_lock lock{mutex_};
    auto key = std::make_pair(id, call);
    auto& c = calls_[key];
    if (c.parts.empty()) {
      c.parts.resize(static_cast<std::size_t>(size));
      c.tags.resize(static_cast<std::size_t>(size));
    }
    c.parts[static_cast<std::size_t>(rank)] = std::move(mine);
    c.tags[static_cast<std::size_t>(rank)] = tag;
    ++c.arrived;
    changed_.notify_all();
    auto start = std::chrono::steady_clock::now();
    while (c.arrived < size) {
      if (abort != nullptr && abort->load())
        return "loopback: aborted (this rank failed or a peer died)";
      if (timeout.count() > 0 && std::chrono::steady_clock::now() - start > timeout)
        return "loopback: not finished after " + std::to_string(timeout.count()) + " ms";
      changed_.wait_for(lock, std::chrono::milliseconds(5));
    }
    for (int t : c.tags)
      if (t != tag)
        return "loopback: ranks issued different collectives at call " + std::to_string(call);
    all = c.parts;
    if (++c.taken == size)
      calls_.erase(key);
    return {};
  }

private:
  struct call_state {
    std::vector<bytes> parts;
    std::vector<int> tags;
    int arrived = 0;
    int taken = 0;
  };
  std::mutex mutex_;
  std::condition_variable changed_;
  std::map<std::pair<std::string, std::uint64_t>, call_state> calls_;
  std::uint64_t next_id_ = 0;
};

class loopback_communicator final : public kernels::collective_communicator {
public:
  loopback_communicator(std::shared_ptr<loopback_hub> hub,
                        std::shared_ptr<const std::atomic<bool>> abort,
                        std::chrono::milliseconds timeout)
      : hub_(std::move(hub)), abort_(std::move(abort)), timeout_(timeout) {}

  std::string make_unique_id(std::string& id) override {
    id = hub_->new_id();
    return {};
  }

  std::string init(int rank, int size, const std::string& unique_id) override {
    rank_ = rank;
    size_ = size;
    id_ = unique_id;
    std::vector<bytes> all;
    return call(0, {}, all);
  }

  std::string all_reduce_sum(const void* in, void* out, std::size_t count,
                             runtime::dtype type) override {
    if (count == 0)
      return {};
    if (type != runtime::dtype::f32)
      return "loopback: sums f32 only";
    std::vector<bytes> all;
    if (auto e = call(1, copy_in(in, count * 4), all); !e.empty())
      return e;
    sum_into(all, 0, count, static_cast<float*>(out));
    return {};
  }

  std::string broadcast(const void* in, void* out, std::size_t count, runtime::dtype type,
                        int root) override {
    auto n = count * runtime::element_size(type);
    if (count == 0)
      return {};
    std::vector<bytes> all;
    if (auto e = call(2, rank_ == root ? copy_in(in, n) : bytes{}, all); !e.empty())
      return e;
    if (out != nullptr)
      std::memcpy(out, all[static_cast<std::size_t>(root)].data(), n);
    return {};
  }

  std::string reduce_scatter_sum(const void* in, void* out, std::size_t recv_count,
                                 runtime::dtype type) override {
    if (recv_count == 0)
      return {};
    if (type != runtime::dtype::f32)
      return "loopback: sums f32 only";
    std::vector<bytes> all;
    if (auto e = call(3, copy_in(in, recv_count * 4 * static_cast<std::size_t>(size_)), all);
        !e.empty())
      return e;
    sum_into(all, recv_count * static_cast<std::size_t>(rank_), recv_count,
             static_cast<float*>(out));
    return {};
  }

  std::string all_gather(const void* in, void* out, std::size_t send_count,
                         runtime::dtype type) override {
    auto n = send_count * runtime::element_size(type);
    if (send_count == 0)
      return {};
    std::vector<bytes> all;
    if (auto e = call(4, copy_in(in, n), all); !e.empty())
      return e;
    for (std::size_t r = 0; r < all.size(); ++r)
      std::memcpy(static_cast<unsigned char*>(out) + r * n, all[r].data(), n);
    return {};
  }

private:
  static bytes copy_in(const void* p, std::size_t n) {
    const auto* b = static_cast<const unsigned char*>(p);
    return bytes(b, b + n);
  }

  /// out[i] = sum over ranks (in rank order) of element first + i.
  static void sum_into(const std::vector<bytes>& all, std::size_t first, std::size_t count,
                       float* out) {
    for (std::size_t i = 0; i < count; ++i) {
      float acc = 0.f;
      for (const auto& part : all) {
        float v;
        std::memcpy(&v, part.data() + (first + i) * 4, 4);
        acc += v;
      }
      out[i] = acc;
    }
  }

  std::string call(int tag, bytes mine, std::vector<bytes>& all) {
    if (!failure_.empty())
      return "loopback: unusable after an earlier failure: " + failure_;
    auto e =
        hub_->meet(id_, size_, rank_, calls_++, tag, std::move(mine), all, abort_.get(), timeout_);
    if (!e.empty())
      failure_ = e;
    return e;
  }

  std::shared_ptr<loopback_hub> hub_;
  std::shared_ptr<const std::atomic<bool>> abort_;
  std::chrono::milliseconds timeout_;
  std::string id_;
  int rank_ = 0;
  int size_ = 1;
  std::uint64_t calls_ = 0;
  std::string failure_;
};

} // namespace troupe::testing
