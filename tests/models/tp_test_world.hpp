#pragma once

// An in-process tensor-parallel group for tests: one thread per rank.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "kernels/cpu/gemm.hpp"
#include "models/layers/tp_group.hpp"
#include "runtime/tensor.hpp"

namespace troupe::models::test {

/// `size` ranks in one process whose threads meet in all_reduce_sum. Every
/// rank sums the deposited tensors itself, in rank order 0..size-1, so the
/// results are bitwise identical on all ranks (like a real deterministic
/// all-reduce). A failing rank aborts the world (run_ranks does), so its peers
/// throw instead of waiting for it forever.
class tp_test_world {
public:
  explicit tp_test_world(int size) : size_(size), slots_(static_cast<std::size_t>(size)) {
    if (size < 1)
      throw std::invalid_argument("tp_test_world: size must be >= 1");
  }
  tp_test_world(const tp_test_world&) = delete;
  tp_test_world& operator=(const tp_test_world&) = delete;

  int size() const noexcept { return size_; }

  /// Rank `rank`'s view of the group; the world must outlive it.
  std::shared_ptr<tp_group> group(int rank) { return std::make_shared<member>(*this, rank); }

  /// Wakes every waiting rank with an error; later collectives fail at once.
  void abort() {
    std::lock_guard lock(mutex_);
    aborted_ = true;
    cv_.notify_all();
  }

  /// All-reduces completed so far (counted once per collective, not per rank).
  std::int64_t all_reduces() const {
    std::lock_guard lock(mutex_);
    return completed_;
  }

  /// Runs f(rank) on one thread per rank (BLAS single-threaded on each) and
  /// rethrows the first failure after every thread has ended.
  template <class F>
  void run_ranks(F&& f) {
    std::vector<std::exception_ptr> errors(static_cast<std::size_t>(size_));
    std::vector<std::thread> threads;
    for (int r = 0; r < size_; ++r)
      threads.emplace_back([&, r] {
        try {
          kernels::cpu::set_blas_threads_for_this_thread(1);
          f(r);
        } catch (...) {
          errors[static_cast<std::size_t>(r)] = std::current_exception();
          abort();
        }
      });
    for (auto& t : threads)
      t.join();
    for (auto& e : errors)
      if (e)
        std::rethrow_exception(e);
  }

private:
  class member final : public tp_group {
  public:
    member(tp_test_world& w, int rank) : world_(w), rank_(rank) {}
    int rank() const override { return rank_; }
    int size() const override { return world_.size_; }
    runtime::tensor all_reduce_sum(const runtime::tensor& t) override {
      return world_.all_reduce_sum(rank_, t);
    }

  private:
    tp_test_world& world_;
    int rank_;
  };

  runtime::tensor all_reduce_sum(int rank, const runtime::tensor& t) {
    if (!t.defined() || t.type() != runtime::dtype::f32)
      throw std::runtime_error("tp_test_world: all_reduce_sum needs an f32 tensor");
    {
      std::unique_lock lock(mutex_);
      slots_[static_cast<std::size_t>(rank)] = &t;
    }
    barrier(); // every rank has deposited
    for (const auto* s : slots_)
      if (s->shape() != slots_[0]->shape()) {
        // Every rank sees the same mismatch and throws before reading data.
        throw std::runtime_error("tp_test_world: all_reduce_sum of mismatched shapes " +
                                 runtime::to_string(s->shape()) + " and " +
                                 runtime::to_string(slots_[0]->shape()));
      }
    runtime::tensor sum = slots_[0]->clone();
    float* out = sum.mutable_data<float>();
    for (std::size_t r = 1; r < slots_.size(); ++r) {
      const float* in = slots_[r]->data<float>();
      for (std::int64_t i = 0; i < sum.numel(); ++i)
        out[i] += in[i];
    }
    barrier(); // nobody reads a slot any more
    if (rank == 0) {
      std::lock_guard lock(mutex_);
      ++completed_;
    }
    return sum;
  }

  /// Waits until all ranks arrive (a reusable generation barrier).
  void barrier() {
    std::unique_lock lock(mutex_);
    if (aborted_)
      throw std::runtime_error("tp_test_world: aborted by a failing rank");
    const std::uint64_t gen = generation_;
    if (++arrived_ == size_) {
      arrived_ = 0;
      ++generation_;
      cv_.notify_all();
      return;
    }
    if (!cv_.wait_for(lock, std::chrono::seconds(120),
                      [&] { return generation_ != gen || aborted_; }))
      throw std::runtime_error("tp_test_world: a rank did not arrive within 120 s");
    if (generation_ == gen)
      throw std::runtime_error("tp_test_world: aborted by a failing rank");
  }

  const int size_;
  std::vector<const runtime::tensor*> slots_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  int arrived_ = 0;
  std::uint64_t generation_ = 0;
  std::int64_t completed_ = 0;
  bool aborted_ = false;
};

} // namespace troupe::models::test
