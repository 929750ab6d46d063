#define BOOST_TEST_DYN_LINK
#define BOOST_TEST_MODULE actors_schedule
#include <boost/test/unit_test.hpp>

#include <set>

#include "actors/schedule.hpp"
#include "models/partitioner.hpp"
#include "runtime/error.hpp"

using namespace troupe::actors;
using troupe::models::layer_range;

namespace {

/// Simulates the pipeline: stage s may run F(m) once stage s-1 ran F(m), and
/// B(m) once stage s+1 ran B(m) (the last stage: once it ran F(m)). Returns
/// true when every action list runs to completion (no deadlock).
bool runs_to_completion(const std::vector<std::vector<action>>& lists, int microbatches) {
  auto stages = static_cast<int>(lists.size());
  std::vector<std::size_t> pc(lists.size(), 0);
  std::vector<std::set<int>> fwd(lists.size()), bwd(lists.size());
  bool progress = true;
  while (progress) {
    progress = false;
    for (int s = 0; s < stages; ++s) {
      if (pc[s] == lists[s].size())
        continue;
      auto a = lists[s][pc[s]];
      bool ready = a.what == action::kind::forward
                     ? (s == 0 || fwd[s - 1].count(a.mb))
                     : (fwd[s].count(a.mb) && (s == stages - 1 || bwd[s + 1].count(a.mb)));
      if (!ready)
        continue;
      (a.what == action::kind::forward ? fwd[s] : bwd[s]).insert(a.mb);
      ++pc[s];
      progress = true;
    }
  }
  for (int s = 0; s < stages; ++s)
    if (pc[s] != lists[s].size() || static_cast<int>(fwd[s].size()) != microbatches ||
        static_cast<int>(bwd[s].size()) != microbatches)
      return false;
  return true;
}

} // namespace

BOOST_AUTO_TEST_CASE(gpipe_runs_all_forwards_then_all_backwards) {
  BOOST_TEST(to_string(make_schedule(schedule_kind::gpipe, 2, 0, 3)) == "F0 F1 F2 B2 B1 B0");
  BOOST_TEST(peak_in_flight(make_schedule(schedule_kind::gpipe, 4, 1, 8)) == 8);
}

BOOST_AUTO_TEST_CASE(one_f_one_b_bounds_in_flight_by_depth) {
  BOOST_TEST(to_string(make_schedule(schedule_kind::one_f_one_b, 2, 0, 3)) == "F0 F1 B0 F2 B1 B2");
  BOOST_TEST(to_string(make_schedule(schedule_kind::one_f_one_b, 2, 1, 3)) == "F0 B0 F1 B1 F2 B2");
  for (int p = 1; p <= 5; ++p)
    for (int m = 1; m <= 9; ++m)
      for (int s = 0; s < p; ++s)
        BOOST_TEST(peak_in_flight(make_schedule(schedule_kind::one_f_one_b, p, s, m)) ==
                   std::min(p - s, m));
}

BOOST_AUTO_TEST_CASE(every_schedule_is_valid_and_deadlock_free) {
  for (auto kind : {schedule_kind::gpipe, schedule_kind::one_f_one_b})
    for (int p = 1; p <= 6; ++p)
      for (int m = 1; m <= 10; ++m) {
        std::vector<std::vector<action>> lists;
        for (int s = 0; s < p; ++s) {
          auto l = make_schedule(kind, p, s, m);
          // Each micro-batch exactly once forward and once backward, F before B.
          std::set<int> seen_f, seen_b;
          for (const auto& a : l) {
            if (a.what == action::kind::forward)
              BOOST_TEST(seen_f.insert(a.mb).second);
            else {
              BOOST_TEST(seen_f.count(a.mb) == 1u);
              BOOST_TEST(seen_b.insert(a.mb).second);
            }
          }
          lists.push_back(std::move(l));
        }
        BOOST_TEST(runs_to_completion(lists, m), to_string(kind) << " P=" << p << " M=" << m);
      }
}

BOOST_AUTO_TEST_CASE(schedule_names_parse_and_reject) {
  BOOST_TEST((parse_schedule_kind("1f1b") == schedule_kind::one_f_one_b));
  BOOST_CHECK_THROW(parse_schedule_kind("zigzag"), troupe::runtime::input_error);
}

BOOST_AUTO_TEST_CASE(partitioner_balances_cost_exactly) {
  auto r = troupe::models::partition_balanced({8, 1, 4, 1, 1}, 2);
  BOOST_TEST(r.size() == 2u);
  BOOST_TEST((r[0] == layer_range{0, 1}));
  BOOST_TEST((r[1] == layer_range{1, 5}));
  auto faster_second = troupe::models::partition_balanced({4, 4, 4, 4}, 2, {1.0, 3.0});
  BOOST_TEST((faster_second[0] == layer_range{0, 1}));
  BOOST_CHECK_THROW(troupe::models::partition_balanced({1, 1}, 3), std::invalid_argument);
  BOOST_CHECK_THROW(troupe::models::validate_partition({{0, 2}, {3, 5}}, 5), std::invalid_argument);
}
