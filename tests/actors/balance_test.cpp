#define BOOST_TEST_DYN_LINK
#define BOOST_TEST_MODULE actors_balance
#include <boost/test/unit_test.hpp>

// --balance auto without processes: the min-max split over unlike devices
// against brute force, which measurements are refused, the balanced plan
// (shares, stage order, split, predicted step), the layer speed probe, and
// the live rebalancers fed synthetic step times (a change, noise, a pipeline
// stage slowing down).

#include <cmath>
#include <random>

#include "actors/plan/balance.hpp"
#include "actors/plan/rebalancer.hpp"
#include "models/layer_costs.hpp"
#include "models/zoo.hpp"

using namespace troupe;
using actors::device_slot;
using models::layer_range;

namespace {

/// A device of node `node` that ran the mlp's 5 layers at `seconds` each
/// per micro-batch of 64.
device_slot measured_device(const std::string& node, std::vector<double> seconds) {
  device_slot d;
  d.name = "cpu:0";
  d.node = node;
  d.layer_seconds = std::move(seconds);
  d.profile_microbatch = 64;
  return d;
}

/// The zoo mlp's shape of costs (dense, relu, dense, relu, dense) times `scale`.
std::vector<double> mlp_costs(double scale) {
  return {4e-3 * scale, 0.2e-3 * scale, 2e-3 * scale, 0.1e-3 * scale, 0.1e-3 * scale};
}

actors::train_options options(int dp, int stages) {
  actors::train_options o;
  o.model = "mlp";
  o.dp = dp;
  o.stages = stages;
  o.batch = 256;
  return o;
}

/// The best contiguous split by trying every one (2 or 3 stages).
double brute_force_bottleneck(const std::vector<std::vector<double>>& costs) {
  const auto n = costs.front().size();
  double best = INFINITY;
  auto cost = [&](std::size_t k, std::size_t b, std::size_t e) {
    double s = 0;
    for (auto l = b; l < e; ++l)
      s += costs[k][l];
    return s;
  };
  if (costs.size() == 2)
    for (std::size_t i = 1; i < n; ++i)
      best = std::min(best, std::max(cost(0, 0, i), cost(1, i, n)));
  else
    for (std::size_t i = 1; i < n; ++i)
      for (std::size_t j = i + 1; j < n; ++j)
        best = std::min(best, std::max({cost(0, 0, i), cost(1, i, j), cost(2, j, n)}));
  return best;
}

} // namespace

BOOST_AUTO_TEST_CASE(the_min_max_split_is_the_best_contiguous_one) {
  std::mt19937 gen(7);
  std::uniform_real_distribution<double> u(0.1, 10.0);
  for (int trial = 0; trial < 200; ++trial) {
    const std::size_t stages = 2 + trial % 2, layers = 3 + trial % 6;
    std::vector<std::vector<double>> costs(stages, std::vector<double>(layers));
    for (auto& row : costs)
      for (auto& c : row)
        c = u(gen);
    const auto split = models::partition_min_max(costs);
    models::validate_partition(split, layers);
    BOOST_TEST(models::bottleneck_cost(costs, split) == brute_force_bottleneck(costs),
               boost::test_tools::tolerance(1e-12));
  }
  using rows = std::vector<std::vector<double>>;
  BOOST_CHECK_THROW(models::partition_min_max(rows{{1, 2}, {1}}), std::invalid_argument);
  BOOST_CHECK_THROW(models::partition_min_max(rows{{1}, {1}}), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(unusable_measurements_name_the_node) {
  auto good = measured_device("a", mlp_costs(1));
  BOOST_TEST(actors::measurement_problems({good, measured_device("b", mlp_costs(3))}, 5).empty());
  auto check = [&](device_slot bad, const std::string& what) {
    const auto problems = actors::measurement_problems({good, bad}, 5);
    BOOST_TEST_REQUIRE(problems.size() == 1u);
    BOOST_TEST(problems[0].find("node b") != std::string::npos, problems[0]);
    BOOST_TEST(problems[0].find(what) != std::string::npos, problems[0]);
  };
  check(measured_device("b", {}), "no measurement");
  check(measured_device("b", mlp_costs(0)), "absurd");
  check(measured_device("b", {1, 1, 1, 1, NAN}), "absurd");
  check(measured_device("b", {1e9, 1e9, 1e9, 1e9, 1e9}), "absurd");
  check(measured_device("b", {1, 1, 1}), "3 layers");
  const auto spread =
      actors::measurement_problems({good, measured_device("b", mlp_costs(5000))}, 5);
  BOOST_TEST_REQUIRE(spread.size() == 1u);
  BOOST_TEST(spread[0].find("node b") != std::string::npos, spread[0]);
}

BOOST_AUTO_TEST_CASE(replicas_share_the_batch_by_measured_speed) {
  const std::vector<device_slot> nodes{measured_device("a", mlp_costs(1)),
                                       measured_device("b", mlp_costs(3))};
  auto p = actors::make_plan(options(2, 1), nodes);
  BOOST_TEST((p.balance == actors::balance_mode::automatic));
  BOOST_TEST_REQUIRE(p.batch_shares.size() == 2u);
  BOOST_TEST(p.batch_shares[0] == 0.75, boost::test_tools::tolerance(1e-9));
  BOOST_TEST(p.batch_shares[1] == 0.25, boost::test_tools::tolerance(1e-9));
  // 192 samples on a at 6.4 ms per 64: 19.2 ms, the same as 64 on b.
  BOOST_TEST(p.predicted_step_seconds == 0.0192, boost::test_tools::tolerance(1e-9));
  // Off, or shares given, or one device unmeasured: as today.
  auto off = options(2, 1);
  off.balance = actors::balance_mode::off;
  auto q = actors::make_plan(off, nodes);
  BOOST_TEST(q.batch_shares[0] == 0.5);
  BOOST_TEST((q.balance == actors::balance_mode::off));
  auto given = options(2, 1);
  given.batch_shares = {1, 1};
  BOOST_TEST(actors::make_plan(given, nodes).batch_shares[1] == 0.5);
  auto unmeasured = nodes;
  unmeasured[1].layer_seconds.clear();
  auto u = actors::make_plan(options(2, 1), unmeasured);
  BOOST_TEST(u.batch_shares[1] == 0.5);
  BOOST_TEST(u.predicted_step_seconds == 0.0);
}

BOOST_AUTO_TEST_CASE(a_pipeline_gives_the_slow_device_fewer_layers) {
  // b is 4x slower: the 4 ms first layer alone on a would leave b 2.4 ms x 4.
  const std::vector<device_slot> nodes{measured_device("a", mlp_costs(1)),
                                       measured_device("b", mlp_costs(4))};
  auto o = options(1, 2);
  o.microbatches = 4;
  auto p = actors::make_plan(o, nodes);
  BOOST_TEST(p.partition == "measured");
  std::vector<std::vector<double>> costs;
  for (int k = 0; k < 2; ++k)
    costs.push_back(p.devices.at(p.slot(0, k).device).layer_seconds);
  std::vector<layer_range> split{p.slot(0, 0).chunks[0], p.slot(0, 1).chunks[0]};
  BOOST_TEST(models::bottleneck_cost(costs, split) == brute_force_bottleneck(costs),
             boost::test_tools::tolerance(1e-12));
  // The fast device holds the heavy first layers, the slow one the rest.
  const auto& fast = p.devices.at(p.slot(0, 0).device);
  BOOST_TEST(fast.node == "a");
  BOOST_TEST(split[0].end - split[0].begin > split[1].end - split[1].begin);
  BOOST_TEST(p.predicted_step_seconds > 0);
  // Listed slow device first: the stage order is swapped, not the speeds ignored.
  auto q = actors::make_plan(o, {nodes[1], nodes[0]});
  BOOST_TEST(q.devices.at(q.slot(0, 0).device).node == "a");
}

BOOST_AUTO_TEST_CASE(the_layer_speed_probe_spans_several_quota_periods) {
  const auto spec = models::zoo_model("mlp");
  const auto t0 = std::chrono::steady_clock::now();
  const auto seconds = models::measure_layer_speed(spec, 32, 0, 0.25);
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  BOOST_TEST(took >= 0.25);
  BOOST_TEST_REQUIRE(seconds.size() == spec.layers.size());
  for (double s : seconds)
    BOOST_TEST(s > 0.0);
  BOOST_TEST(seconds[0] > seconds[1]); // the 784x1024 GEMM against a ReLU
  BOOST_CHECK_THROW(models::measure_layer_speed(spec, 0, 0, 0.1), std::invalid_argument);
}

namespace {

/// Steps of a data-parallel job whose replicas run at `rates` samples per
/// second of compute (times noise); returns the steps at which the
/// rebalancer changed the shares.
std::vector<int> run_shares(actors::share_rebalancer& rb, int steps,
                            const std::function<std::vector<double>(int)>& rates, double noise,
                            int first_step = 0) {
  std::mt19937 gen(42);
  std::uniform_real_distribution<double> jitter(1 - noise, 1 + noise);
  std::vector<int> changes;
  for (int s = first_step; s < first_step + steps; ++s) {
    const auto r = rates(s);
    std::vector<std::int64_t> samples;
    std::vector<double> compute;
    double slowest = 0;
    for (std::size_t i = 0; i < r.size(); ++i) {
      samples.push_back(std::llround(256 * rb.shares()[i]));
      compute.push_back(static_cast<double>(samples.back()) / r[i] * jitter(gen));
      slowest = std::max(slowest, compute.back());
    }
    if (rb.observe(samples, compute, slowest + 0.002))
      changes.push_back(s);
  }
  return changes;
}

} // namespace

BOOST_AUTO_TEST_CASE(shares_follow_a_slowdown_once) {
  actors::share_rebalancer rb({0.5, 0.5});
  // Equal speeds with 8% noise: nothing to do.
  auto equal = [](int) { return std::vector<double>{5000, 5000}; };
  BOOST_TEST(run_shares(rb, 300, equal, 0.08).empty());
  // b drops to a third at step 300: one rebalance within 20 steps, to 3:1.
  auto slowed = [](int) { return std::vector<double>{5000, 5000.0 / 3}; };
  const auto changes = run_shares(rb, 300, slowed, 0.08, 300);
  BOOST_TEST_REQUIRE(changes.size() == 1u);
  BOOST_TEST(changes[0] < 320);
  BOOST_TEST(rb.shares()[0] == 0.75, boost::test_tools::tolerance(0.03));
  // b recovers: its measured ceiling holds it back until it expires (60 s
  // of step time, about 1200 steps here), then one more rebalance, back to
  // equal.
  const auto back = run_shares(rb, 2000, equal, 0.08, 600);
  BOOST_TEST(back.size() == 1u);
  BOOST_TEST(back.at(0) > 1500);
  BOOST_TEST(rb.shares()[0] == 0.5, boost::test_tools::tolerance(0.03));
}

BOOST_AUTO_TEST_CASE(a_quota_that_binds_only_under_load_does_not_oscillate) {
  // b computes at a's speed (6000 samples/s) but may use a third of a core:
  // under its quota its kernels run at full speed, over it they wait out the
  // throttled part of each period (sustained 2000 samples/s).
  actors::share_rebalancer rb({0.5, 0.5});
  std::vector<int> changes;
  double seconds = 0, ceiling_expired = -1;
  for (int s = 0; s < 3000; ++s) {
    const double na = 256 * rb.shares()[0], nb = 256 * rb.shares()[1];
    const double ta = na / 6000, fast_b = nb / 6000;
    const double t = std::max(ta, fast_b) + 0.002;
    const double tb = fast_b > t / 3 ? nb / 2000 : fast_b;
    seconds += std::max(ta, tb) + 0.002;
    if (rb.observe({std::llround(na), std::llround(nb)}, {ta, tb}, std::max(ta, tb) + 0.002)) {
      changes.push_back(s);
      if (changes.size() == 1)
        ceiling_expired = seconds + 60;
      else
        BOOST_TEST(seconds > ceiling_expired); // only a re-probe once b's ceiling expired
    }
  }
  BOOST_TEST_REQUIRE(!changes.empty());
  BOOST_TEST(changes[0] < 30);
  // Light on b, it looks as fast as a: trusted again once a minute, it takes
  // more, is throttled, and gives it back (two rebalances per minute at most).
  BOOST_TEST(changes.size() <= 1 + 2 * static_cast<std::size_t>(seconds / 60));
  BOOST_TEST(rb.shares()[0] == 0.75, boost::test_tools::tolerance(0.03));
}

BOOST_AUTO_TEST_CASE(noise_alone_never_rebalances) {
  // Each replica's time jumps by up to 30% per step (a noisy neighbour),
  // but over the window they stay equal.
  actors::share_rebalancer rb({0.5, 0.5});
  auto equal = [](int) { return std::vector<double>{5000, 5000}; };
  BOOST_TEST(run_shares(rb, 1000, equal, 0.3).empty());
  // A change smaller than the threshold (5%) is left alone too.
  auto close = [](int) { return std::vector<double>{5000, 4600}; };
  BOOST_TEST(run_shares(rb, 500, close, 0.02).empty());
}

BOOST_AUTO_TEST_CASE(a_slowed_stage_gives_layers_to_its_neighbour) {
  // Six equal layers, 1 ms per step each, split 3 | 3; stage 1's device
  // becomes twice as slow.
  std::vector<std::vector<double>> costs(2, std::vector<double>(6, 1e-3 * 8));
  actors::split_rebalancer rb(models::stage_costs{costs, {}}, {{0, 3}, {3, 6}});
  int changes = 0, first = -1;
  for (int s = 0; s < 200; ++s) {
    const double slow = s < 50 ? 1.0 : 2.0;
    std::vector<double> compute;
    for (std::size_t k = 0; k < 2; ++k) {
      const auto& r = rb.split()[k];
      compute.push_back(static_cast<double>(r.end - r.begin) * 8e-3 * (k == 1 ? slow : 1.0));
    }
    if (rb.observe(compute, std::max(compute[0], compute[1]))) {
      ++changes;
      first = first < 0 ? s : first;
    }
  }
  BOOST_TEST(changes == 1);
  BOOST_TEST(first >= 50);
  BOOST_TEST(first < 70);
  BOOST_TEST((rb.split()[0] == layer_range{0, 4}));
}

// A generation's rebalancer starts from the plan's speeds; a device under a
// CPU quota looks fast at the light load a move left it, and a job moved
// layers back onto it (to the split it left, or part of the way). A recent
// move is not undone, wholly or in part.
BOOST_AUTO_TEST_CASE(a_recent_split_move_is_not_undone) {
  std::vector<std::vector<double>> costs(2, std::vector<double>(6, 1e-3 * 8));
  auto run = [&](std::vector<actors::split_move> recent) {
    actors::split_rebalancer rb(models::stage_costs{costs, {}}, {{0, 3}, {3, 6}}, {}, recent);
    int changes = 0;
    for (int s = 0; s < 200; ++s) {
      std::vector<double> compute;
      for (std::size_t k = 0; k < 2; ++k) { // stage 1's device twice as slow
        const auto& r = rb.split()[k];
        compute.push_back(static_cast<double>(r.end - r.begin) * 8e-3 * (k == 1 ? 2.0 : 1.0));
      }
      if (rb.observe(compute, std::max(compute[0], compute[1])))
        ++changes;
    }
    return std::make_pair(changes, rb.split());
  };
  const auto [moved, to] = run({});
  BOOST_TEST(moved == 1); // the control: this is the split it moves to
  BOOST_TEST((to[0] == layer_range{0, 4}));
  // Stage 0 was relieved from 4 layers to 3: the move to 4 | 2 goes back.
  const auto [back, kept] = run({{{{0, 4}, {4, 6}}, {{0, 3}, {3, 6}}}});
  BOOST_TEST(back == 0);
  BOOST_TEST((kept[0] == layer_range{0, 3}));
  // Stage 0 was relieved from 5 layers to 3: 4 | 2 goes part of the way back.
  const auto [partway, kept2] = run({{{{0, 5}, {5, 6}}, {{0, 3}, {3, 6}}}});
  BOOST_TEST(partway == 0);
  BOOST_TEST((kept2[0] == layer_range{0, 3}));
  // A move that relieved stage 1 is not undone by relieving it further.
  const auto [further, to2] = run({{{{0, 2}, {2, 6}}, {{0, 3}, {3, 6}}}});
  BOOST_TEST(further == 1);
  BOOST_TEST((to2[0] == layer_range{0, 4}));
  const actors::split_move m{{{0, 1}, {1, 5}}, {{0, 3}, {3, 5}}}; // the hetero test's first move
  BOOST_TEST(m.undone_by({{0, 2}, {2, 5}}));                      // its later, partial way back
  BOOST_TEST(m.undone_by({{0, 1}, {1, 5}}));
  BOOST_TEST(!m.undone_by({{0, 4}, {4, 5}}));
}

BOOST_AUTO_TEST_CASE(cuts_cost_their_transfers_on_a_slow_link) {
  // Four equal layers on a and on b (twice as slow): without transfer costs
  // b takes one layer (3 | 1); an expensive cut before layer 3 (a wide
  // activation on a slow link) moves the cut to 2 | 2.
  models::stage_costs free{{{1, 1, 1, 1}, {2, 2, 2, 2}}, {}};
  auto even = models::partition_min_max(free);
  BOOST_TEST((even[0] == layer_range{0, 3}));
  models::stage_costs charged = free;
  charged.boundary = {{0, 0, 0, 10, 0}, {0, 0, 0, 10, 0}};
  const auto moved = models::partition_min_max(charged);
  BOOST_TEST((moved[0] == layer_range{0, 2}));
  BOOST_TEST(models::bottleneck_cost(charged, moved) == 4.0);
  BOOST_TEST(charged.of(1, {2, 4}) == 4.0); // its layers, no cut at 4 (the end)
  BOOST_TEST(charged.of(0, {0, 3}) == 13.0);
}

BOOST_AUTO_TEST_CASE(balance_keeps_tensor_parallel_groups_on_a_node) {
  std::vector<device_slot> devices;
  for (std::string node : {"a", "b"})
    for (int i = 0; i < 2; ++i) {
      auto d = measured_device(node, mlp_costs(1));
      d.name = "cpu:" + std::to_string(i);
      d.link_bytes_per_second = node == "a" ? 1e9 : 2e9;
      devices.push_back(d);
    }
  auto o = options(1, 2);
  o.tp = 2;
  auto p = actors::make_plan(o, devices);
  for (int k = 0; k < 2; ++k)
    BOOST_TEST(p.devices.at(p.slot(0, k, 0).device).node ==
               p.devices.at(p.slot(0, k, 1).device).node);
  BOOST_TEST(p.devices.at(p.slot(0, 0, 0).device).node == "b"); // the faster link first
  o.balance = actors::balance_mode::off; // today's round-robin: ranks on both nodes
  auto q = actors::make_plan(o, devices);
  BOOST_TEST(q.devices.at(q.slot(0, 0, 0).device).node !=
             q.devices.at(q.slot(0, 0, 1).device).node);
}

BOOST_AUTO_TEST_CASE(parameter_servers_go_to_the_fastest_link) {
  std::vector<device_slot> devices{measured_device("a", mlp_costs(1)),
                                   measured_device("b", mlp_costs(1)),
                                   measured_device("c", mlp_costs(1))};
  devices[0].link_bytes_per_second = 1e9;
  devices[1].link_bytes_per_second = 1e9;
  devices[2].link_bytes_per_second = 3e9;
  auto o = options(1, 1);
  o.ps = 1;
  auto p = actors::make_plan(o, devices);
  BOOST_TEST(p.devices.at(p.ps_shards.at(0).device).node == "c");
}

BOOST_AUTO_TEST_CASE(after_a_rebalance_only_a_slower_step_moves_again) {
  // Once b is throttled and the shares moved, b's compute times jump by up
  // to 60% from one stretch of steps to the next (a quota's pauses fall
  // unevenly into them) while the step itself stays as fast: no new move.
  actors::share_rebalancer rb({0.5, 0.5});
  std::mt19937 gen(3);
  std::uniform_real_distribution<double> jitter(0.6, 1.6);
  double noise = 1;
  int changes = 0;
  for (int s = 0; s < 1200; ++s) {
    const double na = 256 * rb.shares()[0], nb = 256 * rb.shares()[1];
    const bool slowed = s >= 100;
    if (s > 200 && s % 12 == 0)
      noise = jitter(gen);
    const double ta = na / 6000, tb = nb / (slowed ? 2000 : 6000) * (s > 200 ? noise : 1.0);
    // The step: the throttled replica's sustained pace, whatever its kernels showed.
    const double step = std::max(ta, nb / (slowed ? 2000 : 6000)) + 0.002;
    if (rb.observe({std::llround(na), std::llround(nb)}, {ta, tb}, step))
      ++changes;
  }
  BOOST_TEST(changes == 1);
  BOOST_TEST(rb.shares()[0] == 0.75, boost::test_tools::tolerance(0.03));
}
