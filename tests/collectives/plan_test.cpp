#define BOOST_TEST_DYN_LINK
#define BOOST_TEST_MODULE collectives_plan
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "actors/plan/collective_algorithms.hpp"

using namespace troupe::actors::collectives;

namespace troupe::actors::collectives {
std::ostream& operator<<(std::ostream& os, allreduce_algo a) { return os << to_string(a); }
} // namespace troupe::actors::collectives

namespace {

/// Symbolic value of a block: the expression that computes it ("(x1+x2)"),
/// or nullopt when the rank does not hold it.
using value = std::optional<std::string>;
using state = std::vector<std::vector<value>>; // [rank][block]

std::string leaf(int r) {
  std::string out = std::to_string(r);
  out.insert(out.begin(), 'x');
  return out;
}

/// "(a+b)" (built by appending: GCC 12 warns falsely on chained operator+).
std::string sum(const std::string& a, const std::string& b) {
  std::string out;
  out.reserve(a.size() + b.size() + 3);
  out.push_back('(');
  out.append(a);
  out.push_back('+');
  out.append(b);
  out.push_back(')');
  return out;
}

/// The ranks contributing to an expression, with multiplicity.
std::multiset<int> leaves(const std::string& e) {
  std::multiset<int> out;
  for (std::size_t i = 0; i < e.size(); ++i)
    if (e[i] == 'x') {
      std::size_t j = i + 1;
      while (j < e.size() && std::isdigit(static_cast<unsigned char>(e[j])))
        ++j;
      out.insert(std::stoi(e.substr(i + 1, j - i - 1)));
      i = j - 1;
    }
  return out;
}

/// Runs a plan symbolically: all sends of a step read the state before that
/// step's receives. Checks that every send is matched by exactly one receive
/// at the same step and that released or missing blocks are never read.
state simulate(const collective_plan& p, state s) {
  BOOST_REQUIRE_EQUAL(static_cast<int>(p.steps.size()), p.ranks);
  for (const auto& steps : p.steps)
    BOOST_REQUIRE_EQUAL(steps.size(), p.length());
  for (std::size_t t = 0; t < p.length(); ++t) {
    // (from, to) -> (block, value)
    std::map<std::pair<int, int>, std::pair<int, value>> in_flight;
    for (int r = 0; r < p.ranks; ++r) {
      const auto& st = p.steps[static_cast<std::size_t>(r)][t];
      if (st.send_to < 0)
        continue;
      BOOST_REQUIRE(st.send_to < p.ranks && st.send_to != r);
      BOOST_REQUIRE(st.send_block >= 0 && st.send_block < p.blocks);
      auto& v = s[static_cast<std::size_t>(r)][static_cast<std::size_t>(st.send_block)];
      BOOST_REQUIRE_MESSAGE(v.has_value(), "rank " << r << " sends block " << st.send_block
                                                   << " it does not hold at step " << t);
      BOOST_REQUIRE(in_flight.emplace(std::make_pair(r, st.send_to),
                                      std::make_pair(st.send_block, v)).second);
      if (st.release_after_send)
        v.reset();
    }
    for (int r = 0; r < p.ranks; ++r) {
      const auto& st = p.steps[static_cast<std::size_t>(r)][t];
      if (st.recv_from < 0) {
        BOOST_REQUIRE(st.action == on_receive::none);
        continue;
      }
      auto it = in_flight.find({st.recv_from, r});
      BOOST_REQUIRE_MESSAGE(it != in_flight.end(), "rank " << r << " waits for rank "
                                                           << st.recv_from << " at step " << t);
      BOOST_REQUIRE_EQUAL(it->second.first, st.recv_block);
      auto got = *it->second.second;
      in_flight.erase(it);
      auto& v = s[static_cast<std::size_t>(r)][static_cast<std::size_t>(st.recv_block)];
      switch (st.action) {
        case on_receive::copy:
          v = got;
          break;
        case on_receive::reduce_recv_first:
          BOOST_REQUIRE(v.has_value());
          v = sum(got, *v);
          break;
        case on_receive::reduce_own_first:
          BOOST_REQUIRE(v.has_value());
          v = sum(*v, got);
          break;
        default:
          BOOST_FAIL("receive without an action");
      }
    }
    BOOST_REQUIRE_MESSAGE(in_flight.empty(), "unreceived message at step " << t);
  }
  return s;
}

state all_hold_own(int n, int blocks) {
  state s(static_cast<std::size_t>(n));
  for (int r = 0; r < n; ++r)
    s[static_cast<std::size_t>(r)].assign(static_cast<std::size_t>(blocks), leaf(r));
  return s;
}

std::multiset<int> all_ranks(int n) {
  std::multiset<int> m;
  for (int r = 0; r < n; ++r)
    m.insert(r);
  return m;
}

} // namespace

BOOST_AUTO_TEST_CASE(partition_covers_and_balances) {
  for (std::int64_t numel : {0, 1, 2, 7, 8, 1000, (1 << 20) + 3})
    for (int parts = 1; parts <= 8; ++parts) {
      auto c = partition(numel, parts);
      BOOST_REQUIRE_EQUAL(c.size(), static_cast<std::size_t>(parts));
      std::int64_t off = 0;
      for (const auto& x : c) {
        BOOST_TEST(x.offset == off);
        BOOST_TEST((x.count == numel / parts || x.count == numel / parts + 1));
        off += x.count;
      }
      BOOST_TEST(off == numel);
    }
  BOOST_CHECK_THROW(partition(5, 0), std::invalid_argument);
  BOOST_CHECK_THROW(partition(-1, 2), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(ring_allreduce_reduces_every_block_once_in_ring_order) {
  for (int n = 1; n <= 8; ++n) {
    auto p = ring_allreduce(n);
    BOOST_TEST(p.length() == static_cast<std::size_t>(2 * (n - 1)));
    auto s = simulate(p, all_hold_own(n, n));
    for (int c = 0; c < n; ++c) {
      // Block c accumulates in rank order starting at rank c + 1.
      std::string expect = leaf((c + 1) % n);
      for (int k = 2; k <= n; ++k)
        expect = sum(expect, leaf((c + k) % n));
      for (int r = 0; r < n; ++r) {
        BOOST_REQUIRE(s[r][c].has_value());
        BOOST_TEST(*s[r][c] == expect);
        BOOST_TEST(leaves(*s[r][c]) == all_ranks(n));
      }
    }
    // Every rank sends 2(n-1) blocks of n.
    for (int r = 0; r < n; ++r) {
      auto sends = std::count_if(p.steps[r].begin(), p.steps[r].end(),
                                 [](const plan_step& x) { return x.send_to >= 0; });
      BOOST_TEST(sends == 2 * (n - 1));
    }
  }
}

BOOST_AUTO_TEST_CASE(ring_reduce_scatter_then_all_gather) {
  for (int n = 1; n <= 8; ++n) {
    auto s = simulate(ring_reduce_scatter(n), all_hold_own(n, n));
    state owned(static_cast<std::size_t>(n), std::vector<value>(static_cast<std::size_t>(n)));
    for (int r = 0; r < n; ++r) {
      BOOST_REQUIRE(s[r][r].has_value());
      BOOST_TEST(leaves(*s[r][r]) == all_ranks(n));
      owned[r][r] = s[r][r];
    }
    auto g = simulate(ring_all_gather(n), owned);
    for (int r = 0; r < n; ++r)
      for (int b = 0; b < n; ++b) {
        BOOST_REQUIRE(g[r][b].has_value());
        BOOST_TEST(*g[r][b] == *s[b][b]);
      }
  }
}

BOOST_AUTO_TEST_CASE(tree_allreduce_gives_every_rank_the_same_expression) {
  for (int n = 1; n <= 8; ++n) {
    auto p = tree_allreduce(n);
    auto s = simulate(p, all_hold_own(n, 1));
    for (int r = 0; r < n; ++r) {
      BOOST_REQUIRE(s[r][0].has_value());
      BOOST_TEST(*s[r][0] == *s[0][0]);
      BOOST_TEST(leaves(*s[r][0]) == all_ranks(n));
    }
    int levels = 0;
    while ((2 << levels) <= n)
      ++levels;
    bool pow2 = (n & (n - 1)) == 0;
    BOOST_TEST(p.length() == static_cast<std::size_t>(levels + (pow2 ? 0 : 2)));
  }
  // Lower ranks first: ((x0+x4)+x1)+... for n = 5.
  auto s = simulate(tree_allreduce(5), all_hold_own(5, 1));
  BOOST_TEST(*s[0][0] == "(((x0+x4)+x1)+(x2+x3))");
}

BOOST_AUTO_TEST_CASE(binomial_broadcast_reaches_every_rank) {
  for (int n = 1; n <= 8; ++n)
    for (int root = 0; root < n; ++root) {
      state s(static_cast<std::size_t>(n), std::vector<value>(1));
      s[root][0] = leaf(root);
      auto p = binomial_broadcast(n, root);
      auto out = simulate(p, s);
      for (int r = 0; r < n; ++r) {
        BOOST_REQUIRE(out[r][0].has_value());
        BOOST_TEST(*out[r][0] == leaf(root));
      }
      std::size_t levels = 0;
      while ((1 << levels) < n)
        ++levels;
      BOOST_TEST(p.length() == levels);
    }
  BOOST_CHECK_THROW(binomial_broadcast(3, 3), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(ring_releases_partial_sums_it_sent) {
  // After sending a partial sum in the reduce-scatter, a rank only receives
  // that block back as a copy: the plan lets it drop its reference so the
  // receiver reduces in place.
  auto p = ring_allreduce(4);
  for (int r = 0; r < 4; ++r) {
    for (int s = 0; s < 3; ++s)
      BOOST_TEST(p.steps[r][s].release_after_send);
    for (int s = 3; s < 6; ++s)
      BOOST_TEST(!p.steps[r][s].release_after_send);
  }
  auto rs = ring_reduce_scatter(4);
  for (int r = 0; r < 4; ++r)
    for (int s = 0; s < 3; ++s)
      BOOST_TEST(rs.steps[r][s].release_after_send);
}

BOOST_AUTO_TEST_CASE(choice_by_size_with_override) {
  BOOST_TEST(default_tree_threshold_bytes == 256u * 1024u);
  BOOST_TEST(choose_allreduce(4, 4) == allreduce_algo::tree);
  BOOST_TEST(choose_allreduce(default_tree_threshold_bytes - 1, 4) == allreduce_algo::tree);
  BOOST_TEST(choose_allreduce(default_tree_threshold_bytes, 4) == allreduce_algo::ring);
  BOOST_TEST(choose_allreduce(1 << 30, 1) == allreduce_algo::tree);
  BOOST_TEST(choose_allreduce(100, 4, 64) == allreduce_algo::ring);
  BOOST_TEST(choose_allreduce(1 << 30, 4, default_tree_threshold_bytes, allreduce_algo::tree) ==
             allreduce_algo::tree);
  BOOST_TEST(choose_allreduce(4, 4, default_tree_threshold_bytes, allreduce_algo::ring) ==
             allreduce_algo::ring);
  BOOST_TEST(parse_allreduce_algo("ring") == allreduce_algo::ring);
  BOOST_TEST(to_string(parse_allreduce_algo("auto")) == "auto");
  BOOST_CHECK_THROW(parse_allreduce_algo("mesh"), std::invalid_argument);
}
