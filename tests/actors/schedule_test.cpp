#define BOOST_TEST_DYN_LINK
#define BOOST_TEST_MODULE actors_schedule
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <utility>

#include "actors/plan/plan.hpp"
#include "actors/plan/schedule.hpp"
#include "actors/plan/schedule_simulation.hpp"
#include "actors/plan/train_options.hpp"
#include "models/partitioner.hpp"
#include "runtime/error.hpp"

using namespace troupe::actors;
using troupe::models::layer_range;

namespace {

std::vector<std::vector<action>> all_lists(schedule_kind kind, int p, int m, int v = 1) {
  std::vector<std::vector<action>> lists;
  for (int s = 0; s < p; ++s)
    lists.push_back(make_schedule(kind, p, s, m, v));
  return lists;
}

} // namespace

BOOST_AUTO_TEST_CASE(gpipe_runs_all_forwards_then_all_backwards) {
  BOOST_TEST(to_string(make_schedule(schedule_kind::gpipe, 2, 0, 3)) == "F0 F1 F2 B0 B1 B2");
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
  // simulate() checks each list (every micro-batch-chunk once forward and once
  // backward, F before B) and runs them all with the cross-stage dependencies.
  for (auto kind : {schedule_kind::gpipe, schedule_kind::one_f_one_b, schedule_kind::interleaved})
    for (int p = 1; p <= 8; ++p)
      for (int v = 1; v <= (kind == schedule_kind::interleaved ? 4 : 1); ++v)
        for (int m = 1; m <= 20; ++m) {
          auto sim = simulate(all_lists(kind, p, m, v), p, v, m);
          BOOST_TEST(sim.completed, to_string(kind) << " P=" << p << " V=" << v << " M=" << m
                                                    << ": " << sim.error);
          for (int s = 0; s < p && sim.completed; ++s) {
            auto peak = sim.peak_in_flight[static_cast<std::size_t>(s)];
            if (kind == schedule_kind::gpipe)
              BOOST_TEST(peak == m);
            else if (kind == schedule_kind::one_f_one_b)
              BOOST_TEST(peak == std::min(p - s, m));
            else if (v == 1)
              BOOST_TEST(peak == std::min(p - s, m));
            else { // Megatron's warm-up plus the first steady forward, at most all of them.
              auto bound = std::min(m * v, (p - s - 1) * 2 + (v - 1) * p + 1);
              if (m % p == 0)
                BOOST_TEST(peak == bound);
              else
                BOOST_TEST(peak <= bound);
            }
          }
        }
}

BOOST_AUTO_TEST_CASE(interleaved_with_one_virtual_stage_is_1f1b) {
  for (int p = 1; p <= 4; ++p)
    for (int m = 1; m <= 9; ++m)
      for (int s = 0; s < p; ++s)
        BOOST_TEST((make_schedule(schedule_kind::interleaved, p, s, m, 1) ==
                    make_schedule(schedule_kind::one_f_one_b, p, s, m)));
}

BOOST_AUTO_TEST_CASE(interleaved_follows_megatrons_order) {
  // P=2, V=2, M=4: micro-batches in groups of 2, each group through chunk 0
  // then chunk 1; device 0 warms up with (2-0-1)*2 + (2-1)*2 = 4 forwards.
  BOOST_TEST(to_string(make_schedule(schedule_kind::interleaved, 2, 0, 4, 2)) ==
             "F0.0 F1.0 F0.1 F1.1 F2.0 B0.1 F3.0 B1.1 F2.1 B0.0 F3.1 B1.0 B2.1 B3.1 B2.0 B3.0");
  BOOST_TEST(to_string(make_schedule(schedule_kind::interleaved, 2, 1, 4, 2)) ==
             "F0.0 F1.0 F0.1 B0.1 F1.1 B1.1 F2.0 B0.0 F3.0 B1.0 F2.1 B2.1 F3.1 B3.1 B2.0 B3.0");
  // M not divisible by P: M = 3 is M = 4 without micro-batch 3.
  BOOST_TEST(to_string(make_schedule(schedule_kind::interleaved, 2, 0, 3, 2)) ==
             "F0.0 F1.0 F0.1 F1.1 F2.0 B0.1 B1.1 F2.1 B0.0 B1.0 B2.1 B2.0");
  BOOST_TEST(to_string(forward_only_schedule(3, 2, 2)) == "F0.0 F1.0 F0.1 F1.1 F2.0 F2.1");
  BOOST_CHECK_THROW(make_schedule(schedule_kind::one_f_one_b, 2, 0, 4, 2), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(interleaving_shrinks_the_bubble) {
  // Same work per device (a device's V chunks together = one 1F1B stage),
  // forward 1 and backward 2 time units per whole stage: split V ways, each
  // chunk action takes 1/V of that. Print the peaks, as the issue asks.
  for (int p : {2, 4})
    for (int m : {4, 8}) {
      const int v = 2;
      auto plain = simulate(all_lists(schedule_kind::one_f_one_b, p, m), p, 1, m, 2, 4);
      auto inter = simulate(all_lists(schedule_kind::interleaved, p, m, v), p, v, m, 1, 2);
      BOOST_TEST_REQUIRE(plain.completed);
      BOOST_TEST_REQUIRE(inter.completed);
      BOOST_TEST_MESSAGE("P=" << p << " M=" << m << ": 1f1b makespan " << plain.makespan
                              << ", interleaved V=2 " << inter.makespan);
      for (int s = 0; s < p; ++s)
        BOOST_TEST_MESSAGE("  device " << s << " peak in flight: 1f1b "
                                       << plain.peak_in_flight[static_cast<std::size_t>(s)]
                                       << ", interleaved (chunks) "
                                       << inter.peak_in_flight[static_cast<std::size_t>(s)]);
      BOOST_TEST(inter.makespan < plain.makespan);
    }
}

BOOST_AUTO_TEST_CASE(simulation_reports_invalid_lists_and_deadlocks) {
  const action f0{action::kind::forward, 0}, b0{action::kind::backward, 0};
  const action f1{action::kind::forward, 1}, b1{action::kind::backward, 1};
  std::vector<std::vector<action>> swapped{std::vector<action>{b0, f0}};
  auto bad = simulate(swapped, 1, 1, 1);
  BOOST_TEST(!bad.completed);
  BOOST_TEST(bad.error.find("before its forward") != std::string::npos, bad.error);
  // Stage 0 waits for B0 before it sends F1; stage 1 wants F1 before B0: a cycle.
  std::vector<std::vector<action>> cycle{std::vector<action>{f0, b0, f1, b1},
                                         make_schedule(schedule_kind::gpipe, 2, 1, 2)};
  auto stuck = simulate(cycle, 2, 1, 2);
  BOOST_TEST(!stuck.completed);
  BOOST_TEST(stuck.error.find("deadlock") != std::string::npos, stuck.error);
  auto gp = simulate(all_lists(schedule_kind::gpipe, 2, 2), 2, 1, 2);
  BOOST_TEST(gp.makespan == 6); // 2 forwards, stage 1's F1, then 3 steps of backwards
}

BOOST_AUTO_TEST_CASE(timed_simulation_gives_the_bubble_formulas_and_the_slow_stage) {
  // Balanced stages (forward 1, backward 2 per whole stage; each of V chunks
  // 1/V of that): the bubble is (P-1)/(M+P-1) for gpipe and 1f1b and
  // (P-1)/(V*M+P-1) for interleaved when P divides M.
  auto costs = [](int p, int v, double per_stage) {
    return std::vector<std::vector<double>>(
        static_cast<std::size_t>(p),
        std::vector<double>(static_cast<std::size_t>(v), per_stage / v));
  };
  for (int p : {2, 3, 4})
    for (int m : {4, 8, 12}) {
      for (auto kind : {schedule_kind::gpipe, schedule_kind::one_f_one_b}) {
        auto sim = simulate(all_lists(kind, p, m), p, 1, m, costs(p, 1, 1), costs(p, 1, 2));
        BOOST_TEST_REQUIRE(sim.completed, sim.error);
        BOOST_TEST(sim.time == 3.0 * (m + p - 1), boost::test_tools::tolerance(1e-9));
        BOOST_TEST(sim.bubble() == double(p - 1) / (m + p - 1), boost::test_tools::tolerance(1e-9));
      }
      if (m % p != 0)
        continue;
      auto sim = simulate(all_lists(schedule_kind::interleaved, p, m, 2), p, 2, m, costs(p, 2, 1),
                          costs(p, 2, 2));
      BOOST_TEST_REQUIRE(sim.completed, sim.error);
      BOOST_TEST(sim.bubble() == double(p - 1) / (2 * m + p - 1),
                 boost::test_tools::tolerance(1e-9));
    }
  // The integer overload is the timed one with whole steps.
  auto whole = simulate(all_lists(schedule_kind::one_f_one_b, 3, 5), 3, 1, 5, 1, 2);
  BOOST_TEST(whole.makespan == 3 * (5 + 3 - 1));
  BOOST_TEST(whole.time == 3.0 * (5 + 3 - 1));
  // GPipe, P = 2, M = 4, stage 1 twice as slow: stage 0's forwards end at 4,
  // stage 1's at 9, its backwards at 17, stage 0's last backward at 18. Busy
  // 8 + 16 of 2 x 18.
  std::vector<std::vector<double>> slow{{1.0}, {2.0}};
  auto sim = simulate(all_lists(schedule_kind::gpipe, 2, 4), 2, 1, 4, slow, slow);
  BOOST_TEST_REQUIRE(sim.completed, sim.error);
  BOOST_TEST(sim.time == 18.0);
  BOOST_TEST(sim.bubble() == 1.0 / 3.0, boost::test_tools::tolerance(1e-9));
  // A tail (the optimizer) runs after each device's last action.
  auto tail = simulate(all_lists(schedule_kind::gpipe, 2, 4), 2, 1, 4, slow, slow, {0.5, 0.5});
  BOOST_TEST(tail.time == 18.5);
  BOOST_TEST(tail.busy[0] == 8.5);
  // Costs must be there for every device and chunk, and positive.
  BOOST_TEST(!simulate(all_lists(schedule_kind::gpipe, 2, 4), 2, 1, 4, {{1.0}}, slow).completed);
  BOOST_TEST(
      !simulate(all_lists(schedule_kind::gpipe, 2, 4), 2, 1, 4, {{0.0}, {1.0}}, slow).completed);
}

namespace {

/// [device][chunk] of one cost.
std::vector<std::vector<double>> same_costs(int p, int v, double c) {
  return std::vector<std::vector<double>>(static_cast<std::size_t>(p),
                                          std::vector<double>(static_cast<std::size_t>(v), c));
}

/// Per (chunk, action kind): the micro-batches in the order the list runs them.
std::map<std::pair<int, int>, std::vector<int>> order_by_chunk(const std::vector<action>& list) {
  std::map<std::pair<int, int>, std::vector<int>> r;
  for (const auto& a : list)
    r[{a.chunk, static_cast<int>(a.what)}].push_back(a.mb);
  return r;
}

} // namespace

BOOST_AUTO_TEST_CASE(zb1_defers_weights_into_the_cool_down) {
  // Device 1 of 2 holds back one W, device 0 none: its backwards come later.
  BOOST_TEST(to_string(make_schedule(schedule_kind::zb1, 2, 0, 3)) == "F0 F1 B0 W0 F2 B1 W1 B2 W2");
  BOOST_TEST(to_string(make_schedule(schedule_kind::zb1, 2, 1, 3)) == "F0 B0 F1 B1 W0 F2 B2 W1 W2");
  BOOST_CHECK_THROW(make_schedule(schedule_kind::zb1, 2, 0, 4, 2), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(zero_bubble_schedules_are_valid_deadlock_free_and_within_1f1b_memory) {
  // simulate() checks F, B and W of every micro-batch-chunk once, in that
  // order, and runs the lists with W(mb, s) waiting for B(mb, s).
  for (auto kind : {schedule_kind::zb1, schedule_kind::zbv})
    for (int p = 1; p <= 6; ++p)
      for (int m = 1; m <= 16; ++m) {
        const int v = kind == schedule_kind::zbv ? 2 : 1;
        auto lists = all_lists(kind, p, m, v);
        auto sim = simulate(lists, p, v, m, 1, 1, 1, layout_of(kind));
        BOOST_TEST_REQUIRE(sim.completed, to_string(kind)
                                              << " P=" << p << " M=" << m << ": " << sim.error);
        for (int s = 0; s < p; ++s) {
          const auto& list = lists[static_cast<std::size_t>(s)];
          // Memory, counting a micro-batch until its W: no device above
          // 1f1b's first device (zbv: a chunk is half a device's layers).
          BOOST_TEST(sim.peak_in_flight[static_cast<std::size_t>(s)] <= v * std::min(p, m),
                     to_string(kind) << " P=" << p << " M=" << m << " device " << s);
          // Gradients sum in 1f1b's order: B's and W's of a chunk by micro-batch.
          std::vector<int> in_order(static_cast<std::size_t>(m));
          std::iota(in_order.begin(), in_order.end(), 0);
          for (const auto& [key, mbs] : order_by_chunk(list))
            BOOST_TEST((mbs == in_order), to_string(kind) << " P=" << p << " M=" << m);
        }
      }
}

BOOST_AUTO_TEST_CASE(zero_bubble_bubbles_follow_the_paper) {
  // F = B = W = 1 per whole stage. 1f1b (backward B+W = 2): (P-1)3 idle per
  // device over 3M of work; ZB-H1: (P-1)(F+B-W) = P-1. ZB-V, each chunk
  // action 1 (a device holds two chunks, so 6M of work): the last device
  // waits for the first F through P-1 devices and nothing else once M >= 2P.
  for (int p : {2, 3, 4, 6})
    for (int m : {p, 2 * p, 16}) {
      auto plain = simulate(all_lists(schedule_kind::one_f_one_b, p, m), p, 1, m, 1, 2);
      auto zb1 = simulate(all_lists(schedule_kind::zb1, p, m), p, 1, m, 1, 1, 1);
      auto zbv =
          simulate(all_lists(schedule_kind::zbv, p, m, 2), p, 2, m, 1, 1, 1, chunk_layout::v_shape);
      BOOST_TEST_REQUIRE((plain.completed && zb1.completed && zbv.completed));
      BOOST_TEST(plain.bubble() == 3.0 * (p - 1) / (3 * m + 3 * (p - 1)),
                 boost::test_tools::tolerance(1e-9));
      BOOST_TEST(zb1.bubble() == double(p - 1) / (3 * m + p - 1),
                 boost::test_tools::tolerance(1e-9));
      BOOST_TEST_MESSAGE("P=" << p << " M=" << m << ": bubble 1f1b " << plain.bubble() << ", zb1 "
                              << zb1.bubble() << ", zbv " << zbv.bubble());
      if (m >= 2 * p)
        BOOST_TEST(zbv.bubble() == double(p - 1) / (6 * m + p - 1),
                   boost::test_tools::tolerance(1e-9));
      BOOST_TEST(zbv.bubble() < plain.bubble());
    }
  // Measured costs: W waits for its B; without W costs a split list is refused.
  auto lists = all_lists(schedule_kind::zb1, 2, 4);
  auto ones = same_costs(2, 1, 1.0);
  BOOST_TEST(!simulate(lists, 2, 1, 4, action_costs{ones, ones, {}, {}}).completed);
  auto timed = simulate(lists, 2, 1, 4, action_costs{ones, ones, ones, {}});
  BOOST_TEST_REQUIRE(timed.completed, timed.error);
  BOOST_TEST(timed.time == 3.0 * 4 + 1);
}

BOOST_AUTO_TEST_CASE(split_lists_need_their_weight_actions) {
  const action f0{action::kind::forward, 0}, b0{action::kind::backward, 0};
  const action w0{action::kind::weight, 0}, f1{action::kind::forward, 1};
  const action b1{action::kind::backward, 1}, w1{action::kind::weight, 1};
  auto early = simulate({{f0, w0, b0}}, 1, 1, 1);
  BOOST_TEST(early.error.find("W0.0 comes before its backward") != std::string::npos, early.error);
  auto missing = simulate({{f0, b0, w0, f1, b1}}, 1, 1, 2);
  BOOST_TEST(missing.error.find("misses its weight") != std::string::npos, missing.error);
  BOOST_TEST(simulate({{f0, b0, w0, f1, b1, w1}}, 1, 1, 2).completed);
}

BOOST_AUTO_TEST_CASE(v_shape_maps_chunks_to_virtual_stages) {
  // P = 3: device 0 holds stages 0 and 5, device 2 stages 2 and 3.
  BOOST_TEST(virtual_stage(chunk_layout::v_shape, 3, 0, 1) == 5);
  BOOST_TEST(virtual_stage(chunk_layout::v_shape, 3, 2, 1) == 3);
  BOOST_TEST(virtual_stage(chunk_layout::looped, 3, 2, 1) == 5);
  for (auto l : {chunk_layout::looped, chunk_layout::v_shape})
    for (int s = 0; s < 6; ++s) {
      auto at = position_of(l, 3, s);
      BOOST_TEST(virtual_stage(l, 3, at.stage, at.chunk) == s);
    }
  BOOST_TEST((layout_of(schedule_kind::zbv) == chunk_layout::v_shape));
  BOOST_TEST((layout_of(schedule_kind::interleaved) == chunk_layout::looped));
  BOOST_CHECK_THROW(make_schedule(schedule_kind::zbv, 2, 0, 4, 1), std::invalid_argument);
  // In the V layout the interleaved schedule would deadlock: the layout matters.
  BOOST_TEST(!simulate(all_lists(schedule_kind::zbv, 3, 6, 2), 3, 2, 6).completed);
}

BOOST_AUTO_TEST_CASE(schedule_names_parse_and_reject) {
  BOOST_TEST((parse_schedule_kind("1f1b") == schedule_kind::one_f_one_b));
  BOOST_TEST((parse_schedule_kind("interleaved") == schedule_kind::interleaved));
  for (auto k : {schedule_kind::gpipe, schedule_kind::one_f_one_b, schedule_kind::interleaved,
                 schedule_kind::zb1, schedule_kind::zbv})
    BOOST_TEST((parse_schedule_kind(to_string(k)) == k));
  BOOST_TEST(splits_backward(schedule_kind::zb1));
  BOOST_TEST(!splits_backward(schedule_kind::one_f_one_b));
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

namespace {

/// The best (busiest device, largest chunk) over every split of `costs`
/// into device_of.size() chunks, by enumeration.
std::pair<double, double> best_by_enumeration(const std::vector<double>& costs,
                                              const std::vector<int>& device_of,
                                              const std::vector<double>& speeds) {
  const auto n = costs.size(), chunks = device_of.size();
  std::pair<double, double> best{1e300, 1e300};
  std::vector<std::size_t> ends(chunks);
  // ends[c]: chunk c's end; every strictly increasing choice with ends.back() == n.
  std::function<void(std::size_t, std::size_t)> walk = [&](std::size_t c, std::size_t begin) {
    for (auto end = begin + 1; end + (chunks - 1 - c) <= n; ++end) {
      if (c + 1 == chunks && end != n)
        continue;
      ends[c] = end;
      if (c + 1 < chunks) {
        walk(c + 1, end);
        continue;
      }
      std::vector<double> load(speeds.size(), 0.0);
      double largest = 0;
      std::size_t b = 0;
      for (std::size_t k = 0; k < chunks; ++k) {
        double sum = 0;
        for (auto l = b; l < ends[k]; ++l)
          sum += costs[l];
        sum /= speeds[static_cast<std::size_t>(device_of[k])];
        load[static_cast<std::size_t>(device_of[k])] += sum;
        largest = std::max(largest, sum);
        b = ends[k];
      }
      best = std::min(best, {*std::max_element(load.begin(), load.end()), largest});
    }
  };
  walk(0, 0);
  return best;
}

} // namespace

BOOST_AUTO_TEST_CASE(device_partition_balances_each_devices_chunks_together) {
  using troupe::models::busiest_device_cost;
  using troupe::models::partition_devices;
  // The zoo MLP's FLOPs (dense, relu, dense, relu, dense) interleaved on two
  // devices: chunk by chunk balanced, one device got both dense layers.
  const std::vector<double> mlp{1.6e6, 1024, 1.05e6, 512, 1.0e4};
  const std::vector<int> interleaved{0, 1, 0, 1};
  const auto chunkwise = troupe::models::partition_balanced(mlp, 4);
  const auto balanced = partition_devices(mlp, interleaved);
  BOOST_TEST(busiest_device_cost(mlp, interleaved, chunkwise) > 2.6e6);
  BOOST_TEST(busiest_device_cost(mlp, interleaved, balanced) == 1.6e6 + 512);
  // As plans, logs and bench pipeline print a split.
  BOOST_TEST(troupe::models::to_string(balanced) == "[0, 1) [1, 3) [3, 4) [4, 5)");
  BOOST_TEST(troupe::models::to_string({{0, 1}, {3, 4}}, " | ") == "[0, 1) | [3, 4)");
  // Against enumeration: random costs and speeds, interleaved and V-shaped
  // placements of 2 and 3 devices.
  std::mt19937 rng{7};
  std::uniform_real_distribution<double> cost(0.0, 10.0);
  std::uniform_int_distribution<int> speed_exponent(-1, 2);
  const std::vector<std::vector<int>> placements{
      {0, 1, 0, 1}, {0, 1, 1, 0}, {0, 1, 2, 0, 1, 2}, {0, 1, 2, 2, 1, 0}, {0, 0}};
  for (int trial = 0; trial < 60; ++trial) {
    const auto& device_of = placements[static_cast<std::size_t>(trial) % placements.size()];
    const auto devices =
        static_cast<std::size_t>(*std::max_element(device_of.begin(), device_of.end()) + 1);
    std::vector<double> costs(device_of.size() + static_cast<std::size_t>(trial % 5));
    for (auto& c : costs)
      c = std::floor(cost(rng)); // integers: ties happen, and sums are exact
    std::vector<double> speeds(devices, 1.0);
    if (trial % 2 == 1)
      for (auto& v : speeds) // powers of two: every sum and quotient exact
        v = std::ldexp(1.0, speed_exponent(rng));
    const auto r =
        partition_devices(costs, device_of, trial % 2 == 1 ? speeds : std::vector<double>{});
    troupe::models::validate_partition(r, costs.size());
    BOOST_TEST_REQUIRE(r.size() == device_of.size());
    const auto best = best_by_enumeration(costs, device_of, speeds);
    BOOST_TEST(busiest_device_cost(costs, device_of, r, speeds) == best.first, "trial " << trial);
    double largest = 0; // then the largest chunk
    for (std::size_t k = 0; k < r.size(); ++k)
      largest =
          std::max(largest, std::accumulate(costs.begin() + static_cast<long>(r[k].begin),
                                            costs.begin() + static_cast<long>(r[k].end), 0.0) /
                                speeds[static_cast<std::size_t>(device_of[k])]);
    BOOST_TEST(largest == best.second, "trial " << trial);
    // Out of budget after 10 nodes: never worse than chunk by chunk.
    const auto cut_short = partition_devices(costs, device_of, speeds, 10);
    troupe::models::validate_partition(cut_short, costs.size());
    BOOST_TEST(busiest_device_cost(costs, device_of, cut_short, speeds) <=
               busiest_device_cost(
                   costs, device_of,
                   troupe::models::partition_balanced(costs, static_cast<int>(device_of.size())),
                   speeds));
  }
  // One chunk per device: partition_balanced's split.
  BOOST_TEST((partition_devices({8, 1, 4, 1, 1}, {0, 1}) ==
              troupe::models::partition_balanced({8, 1, 4, 1, 1}, 2)));
  // Out of search budget: the best split found; here no single boundary move
  // improves on the chunkwise split.
  BOOST_TEST((partition_devices(mlp, interleaved, {}, 1) == chunkwise));
  BOOST_CHECK_THROW(partition_devices({1, 1, 1}, {0, 1, 0, 1}), std::invalid_argument);
  BOOST_CHECK_THROW(partition_devices({1, 1, 1}, {0, 2}), std::invalid_argument);
  BOOST_CHECK_THROW(partition_devices({1, 1, 1}, {0, 1}, {1.0}), std::invalid_argument);
  BOOST_CHECK_THROW(partition_devices({1, 1, 1}, {0, -1}), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(virtual_stages_place_chunks_round_robin) {
  train_options o;
  o.stages = 2;
  o.schedule = schedule_kind::interleaved;
  o.virtual_stages = 2;
  auto back = train_options_from_json(to_json(o));
  BOOST_TEST(back.virtual_stages == 2);
  // The mlp's 5 layers in 4 chunks, the devices balanced; device d holds
  // chunks d and d + 2.
  auto p = make_plan(o, 2);
  BOOST_TEST(p.virtual_stages == 2);
  BOOST_TEST_REQUIRE(p.stages.size() == 2u);
  const auto costs = troupe::models::layer_flops(p.model);
  auto all = troupe::models::partition_devices(costs, {0, 1, 0, 1});
  for (std::size_t d = 0; d < 2; ++d) {
    BOOST_TEST_REQUIRE(p.stages[d].chunks.size() == 2u);
    BOOST_TEST((p.stages[d].chunks[0] == all[d]));
    BOOST_TEST((p.stages[d].chunks[1] == all[d + 2]));
  }
  auto text = describe(p);
  BOOST_TEST(text.find(" | [") != std::string::npos, text);
  BOOST_TEST(to_json(p).at("stages").at(1).at("chunks").size() == 2u);
  o.virtual_stages = 3; // 6 chunks of 5 layers
  BOOST_CHECK_THROW(make_plan(o, 2), troupe::runtime::input_error);
  o.virtual_stages = 2;
  o.schedule = schedule_kind::one_f_one_b;
  BOOST_CHECK_THROW(o.validate(), troupe::runtime::input_error);
  o.schedule = schedule_kind::interleaved;
  o.virtual_stages = 0;
  BOOST_CHECK_THROW(o.validate(), troupe::runtime::input_error);
}
