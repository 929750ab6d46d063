#include "actors/collectives/shared_reduction.hpp"

#include <algorithm>
#include <array>
#include <thread>
#include <utility>

#include "actors/collectives/collective_pieces.hpp"
#include "actors/plan/collective_algorithms.hpp"

namespace troupe::actors {

using runtime::tensor;

namespace {

std::logic_error misuse(const std::string& what) {
  return std::logic_error("shared reduction: " + what);
}

/// One step of a spin: tells the core (and a hypervisor) that this thread
/// only polls.
void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

} // namespace

shared_reduction::shared_reduction(int size)
    : size_(size), spins_(size <= static_cast<int>(std::thread::hardware_concurrency())) {
  if (size < 1)
    throw std::invalid_argument("shared reduction of " + std::to_string(size) + " members");
}

void shared_reduction::changed() {
  changes_.fetch_add(1, std::memory_order_release);
  if (sleepers_ > 0)
    changed_.notify_all();
}

void shared_reduction::spin(std::unique_lock<std::mutex>& lock, clock::time_point until) const {
  const auto seen = changes_.load(std::memory_order_acquire);
  lock.unlock();
  while (changes_.load(std::memory_order_acquire) == seen && clock::now() < until)
    for (int i = 0; i < 16; ++i)
      cpu_relax();
  lock.lock();
}

void shared_reduction::sleep(std::unique_lock<std::mutex>& lock) const {
  ++sleepers_;
  changed_.wait(lock);
  --sleepers_;
}

void shared_reduction::check_open() const {
  if (aborted_)
    throw reduction_aborted(*aborted_);
}

shared_reduction::operation& shared_reduction::operation_at(std::int64_t op) {
  auto& o = ops_[op];
  if (o.taken.empty()) {
    o.inputs.resize(static_cast<std::size_t>(size_));
    o.taken.assign(static_cast<std::size_t>(size_), false);
  }
  return o;
}

void shared_reduction::plan_slices(operation& o) const {
  const auto total = o.inputs.front().numel();
  if (o.update) {
    // Only the update reads the sum, a tile at a time while it is in the
    // summing thread's L1 (sum_and_update): no result buffer is written, a
    // stream of memory traffic less per slice.
  } else if (size_ == 2) {
    // Ring blocks 0 and 1 are x1 + x0 and x0 + x1: x0 is an operand of the
    // first addition in both, which fold() may write in place. Summing into
    // member 0's input saves a buffer as large as the bucket (a cold one:
    // +15% samples/s for two replicas of the MLP at batch 64).
    o.result = o.inputs.front();
    o.out = const_cast<float*>(o.result.data<float>());
  } else {
    o.result = tensor::empty(runtime::dtype::f32, {total});
    o.out = o.result.mutable_data<float>();
  }
  const auto blocks = collectives::partition(total, size_);
  for (int c = 0; c < size_; ++c) {
    const auto b = blocks[static_cast<std::size_t>(c)];
    for (std::int64_t k = 0; k < b.count; k += slice_elements)
      o.slices.push_back({c, b.offset + k, std::min(slice_elements, b.count - k)});
  }
}

std::vector<const float*> shared_reduction::sources(const std::vector<tensor>& inputs,
                                                    const slice& s) const {
  std::vector<const float*> src(inputs.size());
  for (int i = 1; i <= size_; ++i)
    src[static_cast<std::size_t>(i - 1)] =
        inputs[static_cast<std::size_t>((s.block + i) % size_)].data<float>() + s.offset;
  return src;
}

void shared_reduction::sum_slice(float* out, const std::vector<tensor>& inputs,
                                 const slice& s) const {
  auto src = sources(inputs, s);
  if (size_ == 1)
    std::copy_n(src[0], s.count, out + s.offset);
  else
    collective_detail::fold(out + s.offset, src, s.count);
}

void shared_reduction::sum_and_update(const operation& o, const slice& s) const {
  auto src = sources(o.inputs, s);
  std::array<float, update_tile> tile;
  for (std::int64_t t = 0; t < s.count; t += update_tile) {
    const auto n = std::min(update_tile, s.count - t);
    if (size_ == 1)
      std::copy_n(src[0], n, tile.data());
    else
      collective_detail::fold(tile.data(), src, n);
    o.update(s.offset + t, n, tile.data());
    for (auto& p : src)
      p += n;
  }
}

void shared_reduction::contribute(std::int64_t op, int rank, tensor input) {
  contribute(op, rank, std::move(input), {}, {});
}

void shared_reduction::contribute(std::int64_t op, int rank, tensor input, slice_update update,
                                  std::vector<tensor> published) {
  if (rank < 0 || rank >= size_)
    throw misuse("member " + std::to_string(rank) + " of " + std::to_string(size_));
  if (!input.defined() || input.type() != runtime::dtype::f32)
    throw misuse("member " + std::to_string(rank) + " brought a non-f32 input to op " +
                 std::to_string(op));
  std::lock_guard lock{mutex_};
  check_open();
  auto& o = operation_at(op);
  if (o.inputs[static_cast<std::size_t>(rank)].defined() || o.have == size_)
    throw misuse("member " + std::to_string(rank) + " brought op " + std::to_string(op) + " twice");
  for (const auto& other : o.inputs)
    if (other.defined() && other.numel() != input.numel())
      throw misuse("op " + std::to_string(op) + " has inputs of " + std::to_string(other.numel()) +
                   " and " + std::to_string(input.numel()) + " elements");
  if (update) {
    if (o.update)
      throw misuse("member " + std::to_string(rank) + " brought a second update to op " +
                   std::to_string(op));
    o.update = std::move(update);
    o.published = std::move(published);
  }
  o.inputs[static_cast<std::size_t>(rank)] = std::move(input);
  if (++o.have < size_)
    return;
  try {
    plan_slices(o);
  } catch (const std::exception& e) { // no memory for the result: nobody may wait for it
    aborted_ = "op " + std::to_string(op) + " has no result buffer: " + e.what();
    changed();
    throw reduction_aborted(*aborted_);
  }
  o.committed = static_cast<bool>(o.update);
  if (o.slices.empty())
    finish(o);
  changed();
}

void shared_reduction::finish(operation& o) {
  o.done = sum{o.result, static_cast<std::int64_t>(o.inputs.front().nbytes()), clock::now(),
               o.committed, o.published};
  o.inputs.clear(); // the members' buffers go back
}

shared_reduction::sum shared_reduction::take(std::int64_t op, int rank) {
  if (rank < 0 || rank >= size_)
    throw misuse("member " + std::to_string(rank) + " of " + std::to_string(size_));
  std::unique_lock lock{mutex_};
  if (auto it = ops_.find(op); it == ops_.end() || !it->second.committed)
    check_open();
  if (operation_at(op).taken[static_cast<std::size_t>(rank)])
    throw misuse("member " + std::to_string(rank) + " took op " + std::to_string(op) + " twice");
  std::optional<clock::time_point> spin_until;
  for (;;) {
    auto& o = ops_.at(op); // abort() keeps the operations: helpers may still read them
    if (!o.committed)      // an update under way is finished first
      check_open();
    if (o.done) {
      auto r = *o.done;
      o.taken[static_cast<std::size_t>(rank)] = true;
      if (++o.takers == size_)
        ops_.erase(op);
      return r;
    }
    if (o.claimed < o.slices.size()) {
      // Sum one slice with the lock released; the inputs and the result
      // stay alive in the operation until every slice is done.
      const auto s = o.slices[o.claimed++];
      lock.unlock();
      if (o.update)
        sum_and_update(o, s);
      else
        sum_slice(o.out, o.inputs, s);
      lock.lock(); // `o` is still there: it is erased only once this member took it
      if (++o.summed == o.slices.size()) {
        finish(o);
        changed();
      }
      continue;
    }
    // Nothing to claim: the others sum their last slices, or an input is
    // still on its way. Poll for spin_window, then sleep; after polling, the
    // state is looked at again under the lock first (a change made between
    // the poll's last look and the lock notified nobody: nobody slept).
    if (spins_ && !spin_until)
      spin_until = clock::now() + spin_window;
    if (spins_ && clock::now() < *spin_until) {
      spin(lock, *spin_until);
      continue;
    }
    sleep(lock);
  }
}

void shared_reduction::abort(const std::string& why) {
  {
    std::lock_guard lock{mutex_};
    if (aborted_)
      return;
    aborted_ = why;
    changed();
  }
}

bool shared_reduction::wait_for_updates(std::chrono::milliseconds limit) const {
  std::unique_lock lock{mutex_};
  ++sleepers_;
  const bool none = changed_.wait_for(lock, limit, [this] {
    return std::none_of(ops_.begin(), ops_.end(),
                        [](const auto& kv) { return kv.second.committed && !kv.second.done; });
  });
  --sleepers_;
  return none;
}

std::optional<std::string> shared_reduction::aborted() const {
  std::lock_guard lock{mutex_};
  return aborted_;
}

} // namespace troupe::actors
