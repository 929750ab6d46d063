#pragma once

#include <cstdint>
#include <mutex>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>

#include "models/layers/tp_group.hpp"

namespace troupe::actors {

/// A layer shard's tensor-parallel group as its split layers see it
/// (models::tp_group): each all-reduce is a request to the shard's collective
/// rank actor (actors/collectives/collective_group.hpp), made from the device thread and
/// waited for there, since a layer's forward cannot go on without the sum.
/// Op ids count the group's collectives: every rank runs the same layers in
/// the same schedule order, so the n-th call is the same operation on every
/// rank. Ranks in other processes are reached through the rank actors'
/// courier (large tensors over the data plane).
///
/// A dead peer fails the rank's pending operations at once (the collective
/// group's contract); the error comes back here and is thrown, which fails
/// the shard and so the job. Nothing waits forever: when a job is torn down
/// its rank actors exit, which ends any request still waiting.
class tp_group_client final : public models::tp_group {
public:
  tp_group_client(caf::actor_system& sys, int rank, int size);

  /// The collective rank actor (wired by the supervisor after the shard was
  /// spawned, before its first step). Thread-safe.
  void set_rank_actor(caf::actor rank);

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  runtime::tensor all_reduce_sum(const runtime::tensor& t) override;

  /// Collectives completed and their payload bytes (this rank's input).
  std::uint64_t ops() const;
  std::uint64_t bytes() const;

private:
  caf::actor_system& sys_;
  int rank_, size_;
  mutable std::mutex mutex_; ///< guards everything below
  caf::actor actor_;
  std::int64_t next_op_ = 0;
  std::uint64_t ops_ = 0, bytes_ = 0;
};

} // namespace troupe::actors
