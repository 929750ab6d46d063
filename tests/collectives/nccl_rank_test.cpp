// The NCCL rank actors (actors/collectives/nccl_group.hpp) on a CPU communicator with
// NCCL's semantics (loopback_communicator.hpp): wiring, rank 0's op order,
// header checks, padding, results against the actor backend, failure
// propagation and stats, in every build and without a GPU. The same cases run
// on real GPUs in tests/cuda/nccl_group_test.cpp.

#define BOOST_TEST_DYN_LINK
#define BOOST_TEST_MODULE nccl_rank
#include <boost/test/unit_test.hpp>

#include <chrono>
#include <memory>
#include <vector>

#include <caf/actor_system.hpp>

#include "actors/collectives/nccl_group.hpp"
#include "tests/collectives/loopback_communicator.hpp"

/// Rank actors whose communicator is the loopback one (devices are not used).
struct backend_under_test {
  std::shared_ptr<troupe::testing::loopback_hub> hub =
      std::make_shared<troupe::testing::loopback_hub>();

  int max_ranks() { return 4; }

  caf::expected<std::vector<caf::actor>> spawn(caf::actor_system& sys, int n) {
    troupe::actors::nccl_rank_config base;
    base.timeout = std::chrono::seconds(60);
    base.communicator = [hub = hub](int, std::shared_ptr<const std::atomic<bool>> abort,
                                    std::chrono::milliseconds timeout) {
      return std::make_unique<troupe::testing::loopback_communicator>(hub, std::move(abort),
                                                                      timeout);
    };
    return troupe::actors::spawn_nccl_group(
        sys, std::vector<troupe::runtime::device>(static_cast<std::size_t>(n)), base);
  }
};

#include "tests/collectives/rank_protocol_cases.hpp"
