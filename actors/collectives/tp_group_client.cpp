#include "actors/collectives/tp_group_client.hpp"

#include <stdexcept>
#include <string>

#include <caf/scoped_actor.hpp>

#include "runtime/net/caf_error.hpp"
#include "actors/protocol/messages.hpp"

namespace troupe::actors {

tp_group_client::tp_group_client(caf::actor_system& sys, int rank, int size)
    : sys_(sys), rank_(rank), size_(size) {}

void tp_group_client::set_rank_actor(caf::actor rank) {
  std::lock_guard lock{mutex_};
  actor_ = std::move(rank);
}

runtime::tensor tp_group_client::all_reduce_sum(const runtime::tensor& t) {
  if (size_ == 1)
    return t;
  caf::actor rank;
  std::int64_t op = 0;
  {
    std::lock_guard lock{mutex_};
    rank = actor_;
    op = next_op_++;
  }
  if (!rank)
    throw std::logic_error("tensor-parallel rank " + std::to_string(rank_) +
                           ": all-reduce before the group was wired");
  caf::scoped_actor self{sys_};
  runtime::tensor result;
  std::string error;
  self->request(rank, caf::infinite, actors::allreduce_atom::value, op, t)
      .receive([&](runtime::tensor& sum) { result = std::move(sum); },
               [&](caf::error& err) { error = runtime::describe(sys_, err); });
  if (!error.empty())
    throw std::runtime_error("tensor-parallel all-reduce " + std::to_string(op) + " of rank " +
                             std::to_string(rank_) + " failed: " + error);
  std::lock_guard lock{mutex_};
  ++ops_;
  bytes_ += t.nbytes();
  return result;
}

std::uint64_t tp_group_client::ops() const {
  std::lock_guard lock{mutex_};
  return ops_;
}

std::uint64_t tp_group_client::bytes() const {
  std::lock_guard lock{mutex_};
  return bytes_;
}

} // namespace troupe::actors
