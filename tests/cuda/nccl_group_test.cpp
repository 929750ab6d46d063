// The NCCL collective backend on real GPUs, in process: groups of 1..N ranks
// (one per GPU, N <= 4) against the actor backend (collective_group.hpp) on the
// same inputs (the cases are tests/collectives/rank_protocol_cases.hpp). Without
// NCCL or without a usable GPU it prints why and exits 77 (ctest: Skipped).

#define BOOST_TEST_DYN_LINK
#define BOOST_TEST_MODULE nccl_group
#define BOOST_TEST_NO_MAIN
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include <caf/actor_system.hpp>

#include "actors/plan/collective_backend.hpp"
#include "actors/collectives/nccl_group.hpp"
#include "kernels/gpu.hpp"

/// NCCL on cuda:0 .. cuda:n-1, as the backend selection would pick it.
struct backend_under_test {
  int max_ranks() { return std::min(troupe::kernels::probe_gpus().usable_devices, 4); }

  caf::expected<std::vector<caf::actor>> spawn(caf::actor_system& sys, int n) {
    std::vector<troupe::runtime::device> devices;
    for (int r = 0; r < n; ++r)
      devices.push_back(troupe::runtime::device::cuda(static_cast<std::int16_t>(r)));
    BOOST_REQUIRE(
        troupe::actors::choose_collective_backend(devices, troupe::actors::nccl_available()) ==
        troupe::actors::collective_backend::nccl);
    troupe::actors::nccl_rank_config base;
    base.timeout = std::chrono::seconds(60);
    return troupe::actors::spawn_nccl_group(sys, devices, base);
  }
};

#include "tests/collectives/rank_protocol_cases.hpp"

int main(int argc, char* argv[]) {
  std::string why;
  if (!actors::nccl_available(&why)) {
    // "NCCL backend not compiled in" or "no CUDA device: <probe reason>".
    std::printf("nccl_group_test skipped: %s\n", why.c_str());
    return 77;
  }
  std::printf("nccl_group_test: %d GPU(s) usable, testing groups of 1..%d ranks\n",
              kernels::probe_gpus().usable_devices, backend_under_test{}.max_ranks());
  return boost::unit_test::unit_test_main(&init_unit_test, argc, argv);
}
