#define BOOST_TEST_DYN_LINK
#define BOOST_TEST_MODULE collectives_group
#include <boost/test/unit_test.hpp>

#include <chrono>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/binary_deserializer.hpp>
#include <caf/binary_serializer.hpp>
#include <caf/message.hpp>
#include <caf/scoped_actor.hpp>

#include "actors/collectives/collective_group.hpp"
#include "actors/protocol/messages.hpp"
#include "actors/protocol/system_config.hpp"
#include "plan_reference.hpp"
#include "random_tensor.hpp"

using namespace troupe;
using runtime::tensor;
using test::random_tensor;
namespace coll = actors::collectives;

namespace {

const std::vector<std::int64_t> sizes = {1, 7, 1000, (std::int64_t{1} << 20) + 3};

std::vector<tensor> inputs(int n, std::int64_t numel, std::uint32_t seed) {
  std::vector<tensor> out;
  for (int r = 0; r < n; ++r)
    out.push_back(random_tensor(numel, seed * 131u + static_cast<std::uint32_t>(r)));
  return out;
}

/// Elementwise sum in double, rounded to float once.
tensor reference_sum(const std::vector<tensor>& xs) {
  auto n = xs.front().numel();
  std::vector<double> acc(static_cast<std::size_t>(n), 0.0);
  for (const auto& x : xs) {
    const float* p = x.data<float>();
    for (std::int64_t i = 0; i < n; ++i)
      acc[static_cast<std::size_t>(i)] += p[i];
  }
  auto t = tensor::empty(runtime::dtype::f32, {n});
  auto* o = t.mutable_data<float>();
  for (std::int64_t i = 0; i < n; ++i)
    o[i] = static_cast<float>(acc[static_cast<std::size_t>(i)]);
  return t;
}

tensor slice(const tensor& t, coll::chunk c) {
  auto out = tensor::empty(t.type(), {c.count});
  std::memcpy(out.mutable_raw_data(), t.data<float>() + c.offset,
              static_cast<std::size_t>(c.count) * sizeof(float));
  return out;
}

struct fixture {
  actors::system_config cfg{2};
  caf::actor_system sys{cfg};
  std::vector<std::vector<caf::actor>> groups;

  std::vector<caf::actor> group(int n, coll::allreduce_algo algo = coll::allreduce_algo::automatic,
                                std::size_t segment_bytes = std::size_t{1} << 20) {
    actors::collective_config c;
    c.algo = algo;
    c.segment_bytes = segment_bytes;
    groups.push_back(actors::spawn_collective_group(sys, n, c));
    return groups.back();
  }

  ~fixture() {
    caf::scoped_actor self{sys};
    for (auto& g : groups)
      for (auto& r : g)
        self->send_exit(r, caf::exit_reason::user_shutdown);
  }

  /// Sends one request per rank (all before receiving any answer) and
  /// returns the answers in rank order; failures as error strings.
  template <class Atom, class... Args>
  std::vector<tensor> run(const std::vector<caf::actor>& ranks, Atom atom, std::int64_t op,
                          const std::vector<tensor>& xs, Args... args) {
    caf::scoped_actor self{sys};
    std::vector<tensor> out(ranks.size());
    std::vector<caf::response_handle<caf::blocking_actor, caf::message, true>> pending;
    for (std::size_t r = 0; r < ranks.size(); ++r)
      pending.push_back(self->request(ranks[r], std::chrono::seconds(30), atom, op, args...,
                                      xs[r]));
    for (std::size_t r = 0; r < ranks.size(); ++r)
      pending[r].receive([&](tensor& t) { out[r] = std::move(t); },
                         [&](caf::error& e) {
                           BOOST_FAIL("rank " << r << ": " << sys.render(e));
                         });
    return out;
  }

  actors::collective_stats stats(const caf::actor& rank) {
    caf::scoped_actor self{sys};
    actors::collective_stats s;
    self->request(rank, std::chrono::seconds(10), actors::coll_stats_atom::value)
      .receive([&](actors::collective_stats& x) { s = x; },
               [&](caf::error& e) { BOOST_FAIL(sys.render(e)); });
    return s;
  }
};

void check_allreduce(fixture& f, coll::allreduce_algo algo, std::size_t segment_bytes) {
  std::int64_t op = 0;
  for (int n = 1; n <= 5; ++n) {
    auto g1 = f.group(n, algo, segment_bytes);
    auto g2 = f.group(n, algo, segment_bytes);
    for (auto numel : sizes) {
      auto xs = inputs(n, numel, static_cast<std::uint32_t>(numel + n));
      auto ref = reference_sum(xs);
      auto a = f.run(g1, actors::allreduce_atom::value, ++op, xs);
      auto b = f.run(g2, actors::allreduce_atom::value, ++op, xs);
      for (int r = 0; r < n; ++r) {
        BOOST_REQUIRE(a[r].defined());
        BOOST_TEST(a[r].shape() == xs[r].shape());
        BOOST_TEST(runtime::bitwise_equal(a[r], a[0]), "rank " << r << " differs, n=" << n
                                                                 << " numel=" << numel);
        BOOST_TEST(runtime::bitwise_equal(b[r], a[0]), "second run differs, n=" << n
                                                                          << " numel=" << numel);
      }
      BOOST_TEST(runtime::relative_difference(a[0], ref) < 1e-6,
                 "n=" << n << " numel=" << numel << " algo=" << coll::to_string(algo));
      // Inputs are never modified (copy on write).
      BOOST_TEST(runtime::bitwise_equal(xs[0], inputs(n, numel, static_cast<std::uint32_t>(numel + n))[0]));
    }
  }
}

} // namespace

BOOST_FIXTURE_TEST_SUITE(collectives, fixture)

BOOST_AUTO_TEST_CASE(ring_allreduce_is_correct_and_bitwise_reproducible) {
  check_allreduce(*this, coll::allreduce_algo::ring, std::size_t{1} << 20);
}

BOOST_AUTO_TEST_CASE(ring_allreduce_with_small_segments) {
  check_allreduce(*this, coll::allreduce_algo::ring, std::size_t{64} << 10);
}

BOOST_AUTO_TEST_CASE(tree_allreduce_is_correct_and_bitwise_reproducible) {
  check_allreduce(*this, coll::allreduce_algo::tree, std::size_t{1} << 20);
}

BOOST_AUTO_TEST_CASE(automatic_choice_agrees_with_the_forced_algorithms) {
  auto aut = group(4);
  auto ring = group(4, coll::allreduce_algo::ring);
  auto tree = group(4, coll::allreduce_algo::tree);
  for (auto numel : sizes) {
    auto xs = inputs(4, numel, 99);
    auto a = run(aut, actors::allreduce_atom::value, 1, xs);
    bool small = static_cast<std::size_t>(numel) * 4 < coll::default_tree_threshold_bytes;
    auto b = run(small ? tree : ring, actors::allreduce_atom::value, 1, xs);
    BOOST_TEST(runtime::bitwise_equal(a[0], b[0]), "numel=" << numel);
  }
}

BOOST_AUTO_TEST_CASE(summation_order_is_visible_so_bitwise_checks_mean_something) {
  // Ring and tree add in different orders: on 1M values of mixed magnitude
  // their results differ in the last bits, while each is reproducible.
  auto ring = group(5, coll::allreduce_algo::ring);
  auto tree = group(5, coll::allreduce_algo::tree);
  auto xs = inputs(5, (1 << 20) + 3, 3);
  auto a = run(ring, actors::allreduce_atom::value, 1, xs);
  auto b = run(tree, actors::allreduce_atom::value, 1, xs);
  BOOST_TEST(!runtime::bitwise_equal(a[0], b[0]));
  BOOST_TEST(runtime::relative_difference(a[0], b[0]) < 1e-6);
}

BOOST_AUTO_TEST_CASE(in_process_results_are_bitwise_the_plans_order) {
  // The plan run on plain vectors (plan_reference.hpp) fixes every element's
  // summation order; however the ranks hold blocks (views of the input, sums
  // written straight into the result, segments), the bits must be these.
  for (int n = 2; n <= 5; ++n) {
    auto ring = group(n, coll::allreduce_algo::ring, std::size_t{64} << 10);
    auto tree = group(n, coll::allreduce_algo::tree, std::size_t{64} << 10);
    for (std::int64_t numel : {std::int64_t{1000}, (std::int64_t{1} << 20) + 3}) {
      auto xs = inputs(n, numel, static_cast<std::uint32_t>(numel + 5 * n));
      auto reference = [&](const coll::collective_plan& plan) {
        std::vector<test::rank_blocks> blocks;
        for (const auto& x : xs)
          blocks.push_back(test::split({x.data<float>(), x.data<float>() + numel}, plan.blocks));
        return test::simulate(plan, std::move(blocks));
      };
      auto bits = [](const tensor& t, const std::vector<float>& want) {
        return t.numel() == static_cast<std::int64_t>(want.size()) &&
               std::memcmp(t.data<float>(), want.data(), want.size() * sizeof(float)) == 0;
      };
      auto want_ring = reference(coll::ring_allreduce(n));
      auto want_tree = reference(coll::tree_allreduce(n));
      auto want_rs = reference(coll::ring_reduce_scatter(n));
      auto a = run(ring, actors::allreduce_atom::value, 1 + 3 * numel, xs);
      auto b = run(tree, actors::allreduce_atom::value, 2 + 3 * numel, xs);
      auto c = run(ring, actors::reduce_scatter_atom::value, 3 + 3 * numel, xs);
      for (int r = 0; r < n; ++r) {
        auto ri = static_cast<std::size_t>(r);
        BOOST_TEST(bits(a[ri], test::join(want_ring[ri])), "ring n=" << n << " r=" << r);
        BOOST_TEST(bits(b[ri], test::join(want_tree[ri])), "tree n=" << n << " r=" << r);
        BOOST_TEST(bits(c[ri], want_rs[ri][ri]), "reduce-scatter n=" << n << " r=" << r);
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(in_process_timing) {
  // Not a benchmark gate: prints what a 4 MiB all-reduce costs in process.
  for (int n : {2, 4}) {
    for (auto algo : {coll::allreduce_algo::ring, coll::allreduce_algo::tree}) {
      auto g = group(n, algo);
      auto xs = inputs(n, 1 << 20, 1);
      run(g, actors::allreduce_atom::value, 0, xs);
      const int reps = 10;
      auto t0 = std::chrono::steady_clock::now();
      for (int i = 1; i <= reps; ++i)
        run(g, actors::allreduce_atom::value, i, xs);
      auto dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      BOOST_TEST_MESSAGE("4 MiB all-reduce, n=" << n << ", " << coll::to_string(algo) << ": "
                                                << dt / reps * 1e3 << " ms");
    }
  }
}

BOOST_AUTO_TEST_CASE(broadcast_from_every_root) {
  std::int64_t op = 0;
  for (int n = 1; n <= 5; ++n) {
    auto g = group(n);
    for (auto numel : sizes)
      for (int root : {0, n - 1, n / 2}) {
        std::vector<tensor> xs(static_cast<std::size_t>(n));
        xs[static_cast<std::size_t>(root)] = random_tensor(numel, 7);
        auto out = run(g, actors::broadcast_atom::value, ++op, xs, std::int32_t{root});
        for (int r = 0; r < n; ++r)
          BOOST_TEST(runtime::bitwise_equal(out[r], xs[static_cast<std::size_t>(root)]),
                     "n=" << n << " root=" << root << " rank=" << r);
      }
  }
}

BOOST_AUTO_TEST_CASE(reduce_scatter_and_all_gather) {
  std::int64_t op = 0;
  for (int n = 1; n <= 5; ++n) {
    auto g = group(n, coll::allreduce_algo::ring);
    for (auto numel : sizes) {
      auto xs = inputs(n, numel, static_cast<std::uint32_t>(3 * numel + n));
      auto ref = reference_sum(xs);
      auto full = run(g, actors::allreduce_atom::value, ++op, xs);
      auto chunks = coll::partition(numel, n);
      auto rs = run(g, actors::reduce_scatter_atom::value, ++op, xs);
      for (int r = 0; r < n; ++r) {
        auto c = chunks[static_cast<std::size_t>(r)];
        BOOST_REQUIRE_EQUAL(rs[r].numel(), c.count);
        // Same ring order as the all-reduce: bitwise its chunk.
        BOOST_TEST(runtime::bitwise_equal(rs[r], slice(full[0], c)), "n=" << n << " r=" << r);
        if (c.count > 0)
          BOOST_TEST(runtime::relative_difference(rs[r], slice(ref, c)) < 1e-6);
      }
      // all_gather is the inverse of reduce_scatter (chunks of unequal size).
      auto ag = run(g, actors::all_gather_atom::value, ++op, rs);
      for (int r = 0; r < n; ++r)
        BOOST_TEST(runtime::bitwise_equal(ag[r], full[0]), "n=" << n << " numel=" << numel);
    }
  }
}

BOOST_AUTO_TEST_CASE(all_gather_concatenates_along_dim0) {
  auto g = group(3);
  std::vector<tensor> xs;
  for (int r = 0; r < 3; ++r)
    xs.push_back(random_tensor(2 * 5, static_cast<std::uint32_t>(r)).reshape({2, 5}));
  auto out = run(g, actors::all_gather_atom::value, 1, xs);
  for (int r = 0; r < 3; ++r) {
    BOOST_TEST(out[r].shape() == (runtime::shape_t{6, 5}));
    BOOST_TEST(std::memcmp(out[r].data<float>() + 10 * r, xs[r].data<float>(), 40) == 0);
  }
}

BOOST_AUTO_TEST_CASE(ring_bytes_sent_per_rank) {
  const std::int64_t numel = (std::int64_t{1} << 20) + 3;
  for (int n = 2; n <= 5; ++n) {
    auto g = group(n, coll::allreduce_algo::ring);
    auto xs = inputs(n, numel, 5);
    run(g, actors::allreduce_atom::value, 1, xs);
    double expect = 2.0 * (n - 1) / n * static_cast<double>(xs[0].nbytes());
    for (int r = 0; r < n; ++r) {
      auto s = stats(g[static_cast<std::size_t>(r)]);
      BOOST_TEST(s.rank == r);
      BOOST_TEST(s.ops_completed == 1u);
      BOOST_TEST(std::abs(static_cast<double>(s.bytes_sent) - expect) <= 8.0 * n,
                 "n=" << n << " rank " << r << " sent " << s.bytes_sent << ", expected " << expect);
    }
  }
}

BOOST_AUTO_TEST_CASE(concurrent_ops_in_any_order_stay_deterministic) {
  // Each rank's caller issues the same ops in a different order, so messages
  // for ops and steps a rank has not reached arrive early.
  const int n = 4, ops = 6;
  auto g = group(n, coll::allreduce_algo::automatic, std::size_t{64} << 10);
  std::vector<std::vector<tensor>> xs;
  for (int o = 0; o < ops; ++o)
    xs.push_back(inputs(n, o % 2 ? 100003 : 1000, static_cast<std::uint32_t>(o)));
  caf::scoped_actor self{sys};
  std::vector<std::vector<tensor>> out(ops, std::vector<tensor>(n));
  std::vector<std::tuple<int, int, caf::response_handle<caf::blocking_actor, caf::message, true>>>
    pending;
  for (int r = 0; r < n; ++r)
    for (int i = 0; i < ops; ++i) {
      int o = (r % 2 == 0) ? (i + r) % ops : ops - 1 - i;
      pending.emplace_back(o, r,
                           self->request(g[static_cast<std::size_t>(r)], std::chrono::seconds(30),
                                         actors::allreduce_atom::value, std::int64_t{100 + o},
                                         xs[o][r]));
    }
  for (auto& [o, r, h] : pending)
    h.receive([&, o = o, r = r](tensor& t) { out[o][r] = std::move(t); },
              [&](caf::error& e) { BOOST_FAIL(sys.render(e)); });
  auto g2 = group(n, coll::allreduce_algo::automatic, std::size_t{64} << 10);
  for (int o = 0; o < ops; ++o) {
    auto again = run(g2, actors::allreduce_atom::value, o, xs[o]);
    for (int r = 0; r < n; ++r)
      BOOST_TEST(runtime::bitwise_equal(out[o][r], again[0]), "op " << o << " rank " << r);
    BOOST_TEST(runtime::relative_difference(again[0], reference_sum(xs[o])) < 1e-6);
  }
}

BOOST_AUTO_TEST_CASE(mismatched_sizes_fail_instead_of_mixing) {
  auto g = group(2, coll::allreduce_algo::tree);
  caf::scoped_actor self{sys};
  auto h0 = self->request(g[0], std::chrono::seconds(5), actors::allreduce_atom::value,
                          std::int64_t{1}, random_tensor(7, 1));
  auto h1 = self->request(g[1], std::chrono::seconds(5), actors::allreduce_atom::value,
                          std::int64_t{1}, random_tensor(8, 2));
  for (auto* h : {&h0, &h1})
    h->receive([](tensor&) { BOOST_FAIL("mismatched all-reduce succeeded"); },
               [&](caf::error& e) {
                 BOOST_TEST(sys.render(e).find("size mismatch") != std::string::npos,
                            sys.render(e));
               });
}

BOOST_AUTO_TEST_CASE(a_bad_request_on_one_rank_fails_the_group_instead_of_hanging) {
  auto g = group(3, coll::allreduce_algo::ring);
  caf::scoped_actor self{sys};
  auto t0 = std::chrono::steady_clock::now();
  std::vector<caf::response_handle<caf::blocking_actor, caf::message, true>> pending;
  for (int r = 0; r < 3; ++r)
    pending.push_back(self->request(g[static_cast<std::size_t>(r)], std::chrono::seconds(10),
                                    actors::allreduce_atom::value, std::int64_t{1},
                                    r == 2 ? tensor::zeros(runtime::dtype::f64, {1000})
                                           : random_tensor(1000, 1)));
  for (auto& h : pending)
    h.receive([](tensor&) { BOOST_FAIL("all-reduce with an f64 input succeeded"); },
              [&](caf::error& e) {
                BOOST_TEST(sys.render(e).find("f32 tensors only") != std::string::npos,
                           sys.render(e));
              });
  auto dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  BOOST_TEST(dt < 2.0);
}

BOOST_AUTO_TEST_CASE(a_dead_rank_fails_the_others_within_two_seconds) {
  for (auto algo : {coll::allreduce_algo::ring, coll::allreduce_algo::tree}) {
    const int n = 4, victim = 2;
    auto g = group(n, algo);
    auto xs = inputs(n, (1 << 20) + 3, 11);
    caf::scoped_actor self{sys};
    std::vector<caf::response_handle<caf::blocking_actor, caf::message, true>> pending;
    for (int r = 0; r < n; ++r)
      if (r != victim)
        pending.push_back(self->request(g[static_cast<std::size_t>(r)], std::chrono::seconds(10),
                                        actors::allreduce_atom::value, std::int64_t{1},
                                        xs[static_cast<std::size_t>(r)]));
    // The others are now blocked in the collective, waiting for the victim.
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    auto t0 = std::chrono::steady_clock::now();
    self->send_exit(g[victim], caf::exit_reason::kill);
    for (auto& h : pending)
      h.receive([](tensor&) { BOOST_FAIL("all-reduce without a rank succeeded"); },
                [&](caf::error& e) {
                  auto what = sys.render(e);
                  BOOST_TEST(what.find(": peer rank " + std::to_string(victim) + " died") !=
                               std::string::npos,
                             what);
                  BOOST_TEST_MESSAGE(what);
                });
    auto dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    BOOST_TEST(dt < 2.0, "took " << dt << " s");
  }
}

BOOST_AUTO_TEST_CASE(collective_messages_are_registered_and_round_trip) {
  actors::collective_msg m;
  m.op = 42;
  m.kind = actors::collective_kind::allreduce_tree;
  m.payload = actors::collective_payload::whole_input;
  m.root = 3;
  m.step = 5;
  m.block = 2;
  m.segment = 1;
  m.from = 4;
  m.total = 1000;
  m.data = random_tensor(250, 9);
  actors::collective_stats st{1, 4, 123, 7, 2};
  std::vector<char> buf;
  {
    caf::binary_serializer sink{sys, buf};
    auto msg = caf::make_message(m, st);
    BOOST_REQUIRE(!sink(msg));
  }
  BOOST_TEST(buf.size() > m.data.nbytes());
  caf::message back;
  caf::binary_deserializer source{sys, buf};
  BOOST_REQUIRE(!source(back));
  BOOST_REQUIRE((back.match_elements<actors::collective_msg, actors::collective_stats>()));
  const auto& x = back.get_as<actors::collective_msg>(0);
  BOOST_TEST((x.op == 42 && x.kind == actors::collective_kind::allreduce_tree &&
              x.payload == actors::collective_payload::whole_input && x.root == 3 &&
              x.step == 5 && x.block == 2 && x.segment == 1 && x.from == 4 && x.total == 1000));
  BOOST_TEST(runtime::bitwise_equal(x.data, m.data));
  const auto& y = back.get_as<actors::collective_stats>(1);
  BOOST_TEST((y.rank == 1 && y.size == 4 && y.bytes_sent == 123u && y.messages_sent == 7u &&
              y.ops_completed == 2u));
}

BOOST_AUTO_TEST_SUITE_END()
