#pragma once

// The all-reduce of a group whose members all live in one process, run by
// the members' own threads on shared memory: no actor, no message. Data
// parallelism's device threads use it for their gradient buckets, so that a
// bucket costs no thread hand-off at all (the collective rank's in-process
// all-reduce, local_allreduce.hpp, costs several per bucket on CAF workers
// that compete with the device threads for the cores). Change it when the
// in-process reduction's summation order or its failure rules change.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <caf/allowed_unsafe_message_type.hpp>

#include "runtime/tensor.hpp"

namespace troupe::actors {

/// A shared reduction that can no longer complete: a member ended (its
/// reason is in the message). Whoever waited for a sum gets it.
struct reduction_aborted : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Sums, per operation id, one flat f32 tensor from each of `size` members.
/// Every element is summed in the ring's order (in ring block c:
/// x[c+1] + ... + x[c], the expression the ring all-reduce between processes
/// evaluates), so results are bitwise those of the collective group in every
/// placement. Members bring their inputs without waiting (contribute); the
/// sum is computed by the members that wait for it (take), each claiming
/// slices of it in turn, so that two members at the end of their backward
/// share the work and one still in its backward leaves it to the others.
/// Every member then reads the one result buffer (read only: copy on
/// write). Thread-safe; the mutex guards bookkeeping, never a slice's sum.
///
/// A member may bring an update with its input (data parallelism with
/// plain SGD and one parameter copy for the process's replicas): whoever
/// sums a slice then applies it to that slice at once, a tile at a time
/// while the tile's sum is in its L1 cache, and the operation is done once
/// every slice is summed and updated. Only the update reads such a sum: it
/// is never written to memory, and the members get no sum tensor. Such an
/// operation, once all its inputs are in, runs to its end even if the
/// reduction is aborted meanwhile: a half-made update would leave
/// parameters no replica ever had.
class shared_reduction {
public:
  using clock = std::chrono::steady_clock;

  /// Applies the update to elements [offset, offset + count) of the
  /// operation, whose sum is `sum` (count values).
  using slice_update =
      std::function<void(std::int64_t offset, std::int64_t count, const float* sum)>;

  /// A finished operation as a member takes it.
  struct sum {
    /// The sum; undefined where an update consumed it (see above).
    runtime::tensor data;
    std::int64_t bytes = 0;     ///< of one member's input
    clock::time_point ready_at; ///< when its last slice was summed
    bool updated = false;       ///< a member's update was applied to every slice
    /// What the member that brought the update published with it (the
    /// parameters it updates, for the other members to share).
    std::vector<runtime::tensor> published;
  };

  /// Elements of one slice of work (a ring block is cut into such slices).
  static constexpr std::int64_t slice_elements = 16384;
  /// Elements an update is handed at a time (the sum's tile, kept in L1).
  static constexpr std::int64_t update_tile = 2048;
  /// How long a member with nothing to claim polls before it sleeps. What
  /// it waits for is mostly another member's last slice (5-10 us) or the
  /// end of another's backward (tens of us): asleep, it paid a thread
  /// wake-up (20-40 us on the reference VM) and its waker a futex call to
  /// another core (~15 us); polling, neither. Where members outnumber the
  /// cores, nobody polls: a poller could keep the member it waits for off
  /// its core.
  static constexpr std::chrono::microseconds spin_window{50};

  explicit shared_reduction(int size);

  int size() const { return size_; }

  /// Member `rank`'s input to operation `op`; returns at once. The input is
  /// handed over: the sum may be written into it (with two members, member
  /// 0's input becomes the result), so its owner reads it only through the
  /// sum from here on. Throws
  /// reduction_aborted after abort(), std::logic_error for a second input
  /// from the same member or a size that differs from the others'.
  void contribute(std::int64_t op, int rank, runtime::tensor input);
  /// The same, with an update for every slice once summed, and tensors
  /// handed to every member with the sum. At most one member brings one.
  void contribute(std::int64_t op, int rank, runtime::tensor input, slice_update update,
                  std::vector<runtime::tensor> published);

  /// Operation `op`'s sum for member `rank`, helping to compute it once every
  /// input is there and waiting while others finish their slices. Each member
  /// takes each sum once; the operation is forgotten when all have. Throws
  /// reduction_aborted when the reduction is aborted first.
  sum take(std::int64_t op, int rank);

  /// No operation will complete any more: every waiting and later call
  /// throws reduction_aborted with `why`. The first reason is kept.
  void abort(const std::string& why);

  /// The abort reason, if aborted.
  std::optional<std::string> aborted() const;

  /// Waits (at most `limit`) until no operation with an update is being
  /// summed: what an update writes is whole when this returns true.
  bool wait_for_updates(std::chrono::milliseconds limit) const;

private:
  /// Elements [offset, offset + count) of ring block `block`.
  struct slice {
    int block = 0;
    std::int64_t offset = 0;
    std::int64_t count = 0;
  };
  struct operation {
    std::vector<runtime::tensor> inputs; ///< per member, until every slice is summed
    int have = 0;
    std::vector<slice> slices; ///< once every input is here
    std::size_t claimed = 0;   ///< slices handed to a member
    std::size_t summed = 0;    ///< slices finished
    runtime::tensor result;
    /// Written by the members' slices at disjoint ranges, before `done`
    /// hands the result out (the one place copy on write is bypassed).
    float* out = nullptr;
    std::optional<sum> done;
    std::vector<bool> taken;
    int takers = 0;
    slice_update update;
    std::vector<runtime::tensor> published;
    /// Every input is in and an update came with one: it runs to its end,
    /// and its members get its sum even if the reduction was aborted.
    bool committed = false;
  };

  /// Lock held: operation `op`, made when it is new.
  operation& operation_at(std::int64_t op);
  /// Lock held: throws reduction_aborted when aborted.
  void check_open() const;
  /// Lock held: something a waiting member may act on changed.
  void changed();
  /// Lock held on entry and return: polls (lock released) until something
  /// changes or `until` passes. The caller looks at the state again.
  void spin(std::unique_lock<std::mutex>& lock, clock::time_point until) const;
  /// Lock held on entry and return: waits for a change, asleep.
  void sleep(std::unique_lock<std::mutex>& lock) const;
  /// Lock held, every slice summed: the operation's sum is ready.
  void finish(operation& o);
  /// Lock held, every input here: the result buffer and the slices to sum.
  void plan_slices(operation& o) const;
  /// Where slice `s` starts in each input, in the order they are added.
  std::vector<const float*> sources(const std::vector<runtime::tensor>& inputs,
                                    const slice& s) const;
  /// Sums slice `s` of `inputs` into `out` (no lock held).
  void sum_slice(float* out, const std::vector<runtime::tensor>& inputs, const slice& s) const;
  /// Sums slice `s` of `o`'s inputs tile by tile, each tile handed to `o`'s
  /// update (no lock held).
  void sum_and_update(const operation& o, const slice& s) const;

  const int size_;
  /// Waiting members poll for spin_window first (no more members than cores).
  const bool spins_;
  mutable std::mutex mutex_;
  mutable std::condition_variable changed_;
  /// Bumped (lock held) by every change a waiting member may act on; read
  /// without the lock by pollers.
  std::atomic<std::uint64_t> changes_{0};
  /// Members and wait_for_updates callers asleep on changed_: a change
  /// notifies only when there is one (a futex call costs the notifier).
  mutable int sleepers_ = 0;
  std::map<std::int64_t, operation> ops_;
  std::optional<std::string> aborted_;
};

/// (shared_reduction_atom) -> shared_reduction_ref: asked of a collective
/// rank by its layer shard at wiring; null unless every rank of the group
/// lives in this process. Never leaves the process.
struct shared_reduction_ref {
  std::shared_ptr<shared_reduction> reduction;
};

} // namespace troupe::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::actors::shared_reduction_ref)
