#pragma once

// The NCCL rank actors (actors/collectives/nccl_group.hpp) against the actor backend
// (collective_group.hpp) on the same inputs, for any communicator: included
// by tests/cuda/nccl_group_test.cpp (NCCL on real GPUs) and by
// tests/collectives/nccl_rank_test.cpp (a CPU communicator with NCCL's
// semantics, so the actors' logic runs in every CI build).
//
// The including file defines, before including this header,
//   struct backend_under_test {
//     int max_ranks();   // largest group to test
//     caf::expected<std::vector<caf::actor>> spawn(caf::actor_system&, int n);  // wired group
//   };
// and provides the Boost.Test module.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/scoped_actor.hpp>

#include "actors/collectives/collective_group.hpp"
#include "actors/collectives/nccl_group.hpp"
#include "runtime/net/caf_error.hpp"
#include "actors/protocol/messages.hpp"
#include "actors/protocol/system_config.hpp"

using namespace troupe;
using runtime::tensor;

namespace rank_protocol {

tensor random_tensor(runtime::shape_t shape, std::uint32_t seed) {
  std::mt19937 gen{seed};
  std::uniform_real_distribution<float> u{-1.f, 1.f};
  std::uniform_int_distribution<int> e{-4, 4};
  auto t = tensor::empty(runtime::dtype::f32, std::move(shape));
  auto* p = t.mutable_data<float>();
  for (std::int64_t i = 0; i < t.numel(); ++i)
    p[i] = std::ldexp(u(gen), e(gen));
  return t;
}

std::vector<tensor> inputs(int n, runtime::shape_t shape, std::uint32_t seed) {
  std::vector<tensor> out;
  for (int r = 0; r < n; ++r)
    out.push_back(random_tensor(shape, seed * 131u + static_cast<std::uint32_t>(r)));
  return out;
}

struct outcome {
  std::vector<tensor> results;
  std::vector<std::string> errors; ///< "" where the rank succeeded
};

struct fixture {
  actors::system_config cfg{4};
  caf::actor_system sys{cfg};
  std::vector<std::vector<caf::actor>> groups;

  ~fixture() {
    caf::scoped_actor self{sys};
    for (auto& g : groups)
      for (auto& r : g)
        self->send_exit(r, caf::exit_reason::user_shutdown);
  }

  backend_under_test backend;

  /// A group of n NCCL rank actors on the backend under test.
  std::vector<caf::actor> nccl_group(int n) {
    auto g = backend.spawn(sys, n);
    if (!g)
      BOOST_FAIL("spawn_nccl_group: " << runtime::describe(sys, g.error()));
    groups.push_back(*g);
    return *g;
  }

  std::vector<caf::actor> actor_group(int n) {
    groups.push_back(actors::spawn_collective_group(sys, n));
    return groups.back();
  }

  /// One request per rank (all sent before any answer is read).
  template <class Atom, class... Args>
  outcome run(const std::vector<caf::actor>& ranks, Atom atom, std::int64_t op,
              const std::vector<tensor>& xs, Args... args) {
    caf::scoped_actor self{sys};
    outcome out;
    out.results.resize(ranks.size());
    out.errors.resize(ranks.size());
    std::vector<caf::response_handle<caf::blocking_actor, caf::message, true>> pending;
    for (std::size_t r = 0; r < ranks.size(); ++r)
      pending.push_back(
          self->request(ranks[r], std::chrono::seconds(120), atom, op, args..., xs[r]));
    for (std::size_t r = 0; r < ranks.size(); ++r)
      pending[r].receive([&](tensor& t) { out.results[r] = std::move(t); },
                         [&](caf::error& e) { out.errors[r] = runtime::describe(sys, e); });
    return out;
  }

  template <class Atom, class... Args>
  std::vector<tensor> run_ok(const std::vector<caf::actor>& ranks, Atom atom, std::int64_t op,
                             const std::vector<tensor>& xs, Args... args) {
    auto o = run(ranks, atom, op, xs, args...);
    for (std::size_t r = 0; r < o.errors.size(); ++r)
      if (!o.errors[r].empty())
        BOOST_FAIL("rank " << r << ": " << o.errors[r]);
    return o.results;
  }
};

void require_close(const tensor& got, const tensor& want, const std::string& what) {
  BOOST_REQUIRE_MESSAGE(got.defined(), what << ": undefined result");
  BOOST_REQUIRE_MESSAGE(got.shape() == want.shape(),
                        what << ": shape " << runtime::to_string(got.shape()) << " vs "
                             << runtime::to_string(want.shape()));
  if (want.numel() > 0)
    BOOST_TEST(runtime::relative_difference(got, want) <= 1e-6, what);
}

const std::vector<runtime::shape_t> shapes = {
    {1}, {7}, {3, 5}, {1000}, {(std::int64_t{1} << 20) + 3}};

} // namespace rank_protocol

using namespace rank_protocol;

BOOST_FIXTURE_TEST_SUITE(nccl_rank_protocol, fixture)

BOOST_AUTO_TEST_CASE(allreduce_matches_the_actor_backend) {
  std::int64_t op = 0;
  for (int n = 1; n <= backend.max_ranks(); ++n) {
    auto g = nccl_group(n);
    auto a = actor_group(n);
    for (const auto& shape : shapes) {
      auto xs = inputs(n, shape, static_cast<std::uint32_t>(n * 7 + shape.size()));
      auto got = run_ok(g, actors::allreduce_atom::value, ++op, xs);
      auto want = run_ok(a, actors::allreduce_atom::value, op, xs);
      for (int r = 0; r < n; ++r) {
        require_close(got[r], want[r],
                      "all-reduce n=" + std::to_string(n) + " shape " + runtime::to_string(shape));
        BOOST_TEST(runtime::bitwise_equal(got[r], got[0])); // NCCL ranks agree bitwise
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(broadcast_from_every_root) {
  std::int64_t op = 100;
  for (int n = 1; n <= backend.max_ranks(); ++n) {
    auto g = nccl_group(n);
    for (int root = 0; root < n; ++root) {
      auto payload = random_tensor({3, 1000 + root}, static_cast<std::uint32_t>(root + 1));
      std::vector<tensor> xs(static_cast<std::size_t>(n)); // non-roots pass nothing
      xs[static_cast<std::size_t>(root)] = payload;
      auto got = run_ok(g, actors::broadcast_atom::value, ++op, xs, std::int32_t{root});
      for (int r = 0; r < n; ++r)
        BOOST_TEST(runtime::bitwise_equal(got[r], payload),
                   "broadcast n=" << n << " root=" << root << " rank=" << r);
    }
  }
}

BOOST_AUTO_TEST_CASE(reduce_scatter_uses_the_actor_backend_partition) {
  std::int64_t op = 200;
  for (int n = 1; n <= backend.max_ranks(); ++n) {
    auto g = nccl_group(n);
    auto a = actor_group(n);
    for (std::int64_t numel : {std::int64_t{1}, std::int64_t{5}, std::int64_t{13},
                               std::int64_t{1000}, (std::int64_t{1} << 20) + 3}) {
      auto xs = inputs(n, {numel}, static_cast<std::uint32_t>(numel));
      auto got = run_ok(g, actors::reduce_scatter_atom::value, ++op, xs);
      auto want = run_ok(a, actors::reduce_scatter_atom::value, op, xs);
      for (int r = 0; r < n; ++r)
        require_close(got[r], want[r],
                      "reduce-scatter n=" + std::to_string(n) + " numel=" + std::to_string(numel) +
                          " rank " + std::to_string(r));
    }
  }
}

BOOST_AUTO_TEST_CASE(all_gather_matches_the_actor_backend) {
  std::int64_t op = 300;
  for (int n = 1; n <= backend.max_ranks(); ++n) {
    auto g = nccl_group(n);
    auto a = actor_group(n);
    // Same trailing dims (stacked along dim 0), uneven rows; then unrelated shapes (flat).
    for (int variant = 0; variant < 2; ++variant) {
      std::vector<tensor> xs;
      for (int r = 0; r < n; ++r)
        xs.push_back(variant == 0 ? random_tensor({r + 1, 4}, static_cast<std::uint32_t>(r))
                                  : random_tensor({r + 2, r + 1}, static_cast<std::uint32_t>(r)));
      auto got = run_ok(g, actors::all_gather_atom::value, ++op, xs);
      auto want = run_ok(a, actors::all_gather_atom::value, op, xs);
      for (int r = 0; r < n; ++r)
        BOOST_TEST(runtime::bitwise_equal(got[r], want[r]),
                   "all-gather n=" << n << " variant " << variant << " rank " << r);
    }
    // Other dtypes travel too.
    std::vector<tensor> ints;
    for (int r = 0; r < n; ++r)
      ints.push_back(tensor::from_vector<std::int32_t>({2}, {r, -r}));
    auto got = run_ok(g, actors::all_gather_atom::value, ++op, ints);
    auto want = run_ok(a, actors::all_gather_atom::value, op, ints);
    for (int r = 0; r < n; ++r)
      BOOST_TEST(runtime::bitwise_equal(got[r], want[r]));
  }
}

BOOST_AUTO_TEST_CASE(concurrent_ops_requested_in_different_orders) {
  int n = backend.max_ranks();
  auto g = nccl_group(n);
  caf::scoped_actor self{sys};
  constexpr int ops = 6;
  std::vector<std::vector<tensor>> xs;
  for (int k = 0; k < ops; ++k)
    xs.push_back(inputs(n, {257 + k}, static_cast<std::uint32_t>(k + 50)));
  // Rank r issues ops in a rotated order; NCCL needs one order, rank 0 sets it.
  std::vector<std::vector<caf::response_handle<caf::blocking_actor, caf::message, true>>> pending(
      static_cast<std::size_t>(n));
  std::vector<std::vector<int>> issued(static_cast<std::size_t>(n));
  for (int r = 0; r < n; ++r)
    for (int i = 0; i < ops; ++i) {
      int k = (i + r) % ops;
      issued[static_cast<std::size_t>(r)].push_back(k);
      pending[static_cast<std::size_t>(r)].push_back(self->request(
          g[static_cast<std::size_t>(r)], std::chrono::seconds(120), actors::allreduce_atom::value,
          std::int64_t{1000 + k}, xs[static_cast<std::size_t>(k)][static_cast<std::size_t>(r)]));
    }
  std::vector<std::vector<tensor>> got(ops, std::vector<tensor>(static_cast<std::size_t>(n)));
  for (int r = 0; r < n; ++r)
    for (int i = 0; i < ops; ++i) {
      int k = issued[static_cast<std::size_t>(r)][static_cast<std::size_t>(i)];
      pending[static_cast<std::size_t>(r)][static_cast<std::size_t>(i)].receive(
          [&](tensor& t) { got[static_cast<std::size_t>(k)][static_cast<std::size_t>(r)] = t; },
          [&](caf::error& e) {
            BOOST_FAIL("rank " << r << " op " << k << ": " << runtime::describe(sys, e));
          });
    }
  auto a = actor_group(n);
  for (int k = 0; k < ops; ++k) {
    auto want =
        run_ok(a, actors::allreduce_atom::value, 2000 + k, xs[static_cast<std::size_t>(k)]);
    for (int r = 0; r < n; ++r)
      require_close(got[static_cast<std::size_t>(k)][static_cast<std::size_t>(r)],
                    want[static_cast<std::size_t>(r)], "concurrent op " + std::to_string(k));
  }
}

BOOST_AUTO_TEST_CASE(size_mismatch_fails_every_rank_with_the_same_reason) {
  int n = backend.max_ranks();
  if (n < 2) {
    BOOST_TEST_MESSAGE("needs 2 ranks");
    return;
  }
  auto g = nccl_group(n);
  std::vector<tensor> xs;
  for (int r = 0; r < n; ++r)
    xs.push_back(random_tensor({r == 1 ? 9 : 8}, static_cast<std::uint32_t>(r)));
  auto o = run(g, actors::allreduce_atom::value, 1, xs);
  for (int r = 0; r < n; ++r) {
    BOOST_TEST(!o.results[static_cast<std::size_t>(r)].defined());
    BOOST_TEST(o.errors[static_cast<std::size_t>(r)].find("buffer size mismatch") !=
                   std::string::npos,
               "rank " << r << ": " << o.errors[static_cast<std::size_t>(r)]);
  }
}

BOOST_AUTO_TEST_CASE(dead_peer_fails_the_pending_op_instead_of_hanging) {
  int n = backend.max_ranks();
  if (n < 2) {
    BOOST_TEST_MESSAGE("needs 2 ranks");
    return;
  }
  auto g = nccl_group(n);
  // Warm up (communicator created and connected).
  run_ok(g, actors::allreduce_atom::value, 1, inputs(n, {16}, 1));
  caf::scoped_actor self{sys};
  auto start = std::chrono::steady_clock::now();
  // Every rank but the last enters an all-reduce that the last never joins.
  std::vector<caf::response_handle<caf::blocking_actor, caf::message, true>> pending;
  auto xs = inputs(n, {1 << 16}, 2);
  for (int r = 0; r + 1 < n; ++r)
    pending.push_back(self->request(g[static_cast<std::size_t>(r)], std::chrono::seconds(60),
                                    actors::allreduce_atom::value, std::int64_t{2},
                                    xs[static_cast<std::size_t>(r)]));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  self->send_exit(g.back(), caf::exit_reason::kill);
  for (int r = 0; r + 1 < n; ++r) {
    std::string err;
    pending[static_cast<std::size_t>(r)].receive(
        [&](tensor&) { err = "succeeded"; },
        [&](caf::error& e) { err = runtime::describe(sys, e); });
    BOOST_TEST(err.find("peer rank " + std::to_string(n - 1) + " died") != std::string::npos,
               "rank " << r << ": " << err);
  }
  auto took = std::chrono::steady_clock::now() - start;
  BOOST_TEST(took < std::chrono::seconds(10));
}

BOOST_AUTO_TEST_CASE(duplicate_pending_op_id_fails_the_rank) {
  int n = backend.max_ranks();
  if (n < 2) {
    BOOST_TEST_MESSAGE("needs 2 ranks");
    return;
  }
  auto g = nccl_group(n);
  caf::scoped_actor self{sys};
  // Only rank 0 is asked, so op 7 stays pending there (its peers never join).
  auto x = inputs(1, {8}, 9).front();
  auto first = self->request(g[0], std::chrono::seconds(30), actors::allreduce_atom::value,
                             std::int64_t{7}, x);
  auto second = self->request(g[0], std::chrono::seconds(30), actors::allreduce_atom::value,
                              std::int64_t{7}, x);
  for (auto* h : {&first, &second}) {
    std::string err;
    h->receive([&](tensor&) { err = "succeeded"; },
               [&](caf::error& e) { err = runtime::describe(sys, e); });
    BOOST_TEST(err.find("already pending") != std::string::npos, err);
  }
}

BOOST_AUTO_TEST_CASE(stats_count_operations) {
  int n = backend.max_ranks();
  auto g = nccl_group(n);
  run_ok(g, actors::allreduce_atom::value, 1, inputs(n, {100}, 3));
  caf::scoped_actor self{sys};
  self->request(g[0], std::chrono::seconds(10), actors::coll_stats_atom::value)
      .receive(
          [&](actors::collective_stats& s) {
            BOOST_TEST(s.rank == 0);
            BOOST_TEST(s.size == n);
            BOOST_TEST(s.ops_completed == 1u);
            BOOST_TEST(s.bytes_sent == 400u);
            BOOST_TEST(s.messages_sent == 2u); // header exchange + payload
          },
          [&](caf::error& e) { BOOST_FAIL(runtime::describe(sys, e)); });
}

BOOST_AUTO_TEST_SUITE_END()
