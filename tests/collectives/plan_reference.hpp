#pragma once

// The reference the collectives tests compare with bitwise: a plan
// (collective_algorithms.hpp) run on plain vectors, in the summation order
// the plan fixes, independent of the actors and of how they hold blocks.

#include <map>
#include <utility>
#include <vector>

#include <boost/test/unit_test.hpp>

#include "actors/plan/collective_algorithms.hpp"

namespace troupe::test {

namespace coll = actors::collectives;

/// Runs `plan` on the ranks' buffers (each `blocks` of partition(numel,
/// plan.blocks); an empty vector is a block the rank does not hold): every
/// step's sends read the values before the step, then the receives apply the
/// plan's action in the plan's operand order. Independent of the actors.
using rank_blocks = std::vector<std::vector<float>>; // [block] -> values
inline std::vector<rank_blocks> simulate(const coll::collective_plan& plan,
                                         std::vector<rank_blocks> x) {
  for (std::size_t s = 0; s < plan.length(); ++s) {
    std::map<std::pair<int, int>, std::vector<float>> wire; // (from, to) -> block values
    for (int r = 0; r < plan.ranks; ++r) {
      const auto& st = plan.steps[static_cast<std::size_t>(r)][s];
      if (st.send_to >= 0)
        wire[{r, st.send_to}] =
            x[static_cast<std::size_t>(r)][static_cast<std::size_t>(st.send_block)];
    }
    for (int r = 0; r < plan.ranks; ++r) {
      const auto& st = plan.steps[static_cast<std::size_t>(r)][s];
      if (st.recv_from < 0)
        continue;
      const auto& got = wire.at({st.recv_from, r});
      auto& own = x[static_cast<std::size_t>(r)][static_cast<std::size_t>(st.recv_block)];
      if (st.action == coll::on_receive::copy) {
        own = got;
        continue;
      }
      BOOST_REQUIRE_EQUAL(own.size(), got.size());
      for (std::size_t i = 0; i < own.size(); ++i)
        own[i] =
            st.action == coll::on_receive::reduce_recv_first ? got[i] + own[i] : own[i] + got[i];
    }
  }
  return x;
}

inline rank_blocks split(const std::vector<float>& v, int blocks) {
  rank_blocks out;
  for (auto c : coll::partition(static_cast<std::int64_t>(v.size()), blocks))
    out.emplace_back(v.begin() + c.offset, v.begin() + c.offset + c.count);
  return out;
}

inline std::vector<float> join(const rank_blocks& b) {
  std::vector<float> out;
  for (const auto& x : b)
    out.insert(out.end(), x.begin(), x.end());
  return out;
}

} // namespace troupe::test
