#pragma once

// Data parallelism's agreement checks: the replicas' parameter digests
// (--check-replicas) and their all-reduced gradient norms (--clip-norm) must
// equal replica 0's to the bit. Change it when replicas are compared anew.

#include <cstdint>
#include <string>

#include "actors/training/trainer_state.hpp"

namespace troupe::actors::training {

/// --check-replicas: the replicas' parameter digests of a step, shard by
/// shard, must all equal replica 0's. Every shard must have sent one for
/// this step: a missing digest fails the check, it never passes it. The
/// digests are used up (cleared) by the check. Returns the failure, or
/// empty; counts the comparisons made in st.totals.digest_comparisons.
std::string check_digests(trainer_state& st, std::int64_t step);

/// --clip-norm: every replica's shards must have counted the same
/// all-reduced gradient (st.current.grad_sumsq, all present). Returns the
/// failure, or empty.
std::string check_grad_sumsq(const trainer_state& st, std::int64_t step);

} // namespace troupe::actors::training
