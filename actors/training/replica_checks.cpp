#include "actors/training/replica_checks.hpp"

#include <utility>

namespace troupe::actors::training {

std::string check_digests(trainer_state& st, std::int64_t step) {
  auto digests = std::exchange(st.current.digests, {});
  st.current.digests.assign(digests.size(), std::nullopt);
  const auto& g = st.grid;
  for (int k = 0; k < g.depth; ++k)
    for (int t = 0; t < g.tp; ++t) {
      for (int r = 0; r < g.replicas; ++r)
        if (!digests[g.index({r, k, t})])
          return "--check-replicas: " + g.name({r, k, t}) + " sent no parameter digest for step " +
                 std::to_string(step);
      const auto ref = *digests[g.index({0, k, t})];
      for (int r = 1; r < g.replicas; ++r) {
        ++st.totals.digest_comparisons;
        if (*digests[g.index({r, k, t})] != ref)
          return "--check-replicas: " + g.name({r, k, t}) +
                 " diverged from replica 0: its parameters differ after step " +
                 std::to_string(step);
      }
    }
  return {};
}

std::string check_grad_sumsq(const trainer_state& st, std::int64_t step) {
  const auto& g = st.grid;
  const auto& sumsq = st.current.grad_sumsq;
  for (int r = 1; r < g.replicas; ++r)
    for (int k = 0; k < g.depth; ++k)
      for (int t = 0; t < g.tp; ++t)
        if (*sumsq[g.index({r, k, t})] != *sumsq[g.index({0, k, t})])
          return g.name({r, k, t}) +
                 " diverged from replica 0: its all-reduced gradient norm differs in step " +
                 std::to_string(step);
  return {};
}

} // namespace troupe::actors::training
