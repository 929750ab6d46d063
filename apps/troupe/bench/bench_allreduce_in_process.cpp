// `bench allreduce` in process: N collective rank actors in one actor system.

#include <algorithm>
#include <cstdio>

#include "actors/collectives/collective_group.hpp"
#include "apps/troupe/bench/bench_allreduce_driver.hpp"
#include "apps/troupe/bench/bench_allreduce_runs.hpp"
#include "actors/protocol/system_config.hpp"

namespace troupe::apps::allreduce_bench {

namespace fs = std::filesystem;
namespace rt = troupe::runtime;
namespace coll = troupe::actors::collectives;
using namespace std::chrono_literals;

std::vector<summary> bench_in_process(const allreduce_flags& f,
                                      const std::vector<std::size_t>& sizes,
                                      coll::allreduce_algo algo) {
  troupe::actors::system_config cfg{static_cast<unsigned>(std::max(0, f.threads))};
  caf::actor_system sys{cfg};
  actors::collective_config base;
  base.algo = algo;
  base.segment_bytes = f.segment_bytes;
  auto group = actors::spawn_collective_group(sys, f.ranks, base);
  std::vector<int> all(static_cast<std::size_t>(f.ranks));
  for (int r = 0; r < f.ranks; ++r)
    all[static_cast<std::size_t>(r)] = r;
  auto barrier =
      sys.spawn(driver, group, constant_inputs(all, 1), expected_sum(f.ranks), barrier_ops);
  std::vector<summary> out;
  std::int64_t first_op = 1;
  for (auto bytes : sizes) {
    auto numel = static_cast<std::int64_t>(bytes / sizeof(float));
    auto timed =
        sys.spawn(driver, group, constant_inputs(all, numel), expected_sum(f.ranks), first_op);
    first_op += std::int64_t{1} << 30;
    int iters = iterations_for(bytes);
    out.push_back(summary::of(measure(sys, timed, barrier, f.warmup, f.reps, iters)));
    caf::anon_send_exit(timed, caf::exit_reason::user_shutdown);
    std::printf("  in process  %6s  %9.3f ms\n", human_bytes(bytes).c_str(),
                out.back().median * 1e3);
    std::fflush(stdout);
  }
  caf::anon_send_exit(barrier, caf::exit_reason::user_shutdown);
  for (auto& r : group)
    caf::anon_send_exit(r, caf::exit_reason::user_shutdown);
  return out;
}

} // namespace troupe::apps::allreduce_bench
