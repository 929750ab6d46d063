// Collectives with every rank in its own OS process: each rank process (this
// test binary re-run with --rank-process) has its own actor system and
// courier and joins a collective_mesh over 127.0.0.1 (CAF for control and
// blocks <= 4 KiB, the data plane above), as `troupe bench allreduce
// --processes` connects them. The test process drives the ranks line by line
// (stdin/stdout) and checks:
//  - all-reduce (ring and tree), broadcast, reduce-scatter and all-gather for
//    N = 1..5 ranks and 1 element .. 12 MB, sizes not divisible by N: every
//    rank's result is bitwise the reference that simulate() computes by
//    running the plan (collective_algorithms.hpp) on the same inputs, in the
//    summation order the plan fixes; ranks therefore agree bitwise;
//  - a ring all-reduce makes each rank send 2(n - 1)/n of the buffer
//    (coll_stats_atom);
//  - a rank process killed with SIGKILL while the others wait in a collective
//    fails their pending ops within 2 s with an error naming the dead rank.

#define BOOST_TEST_DYN_LINK
#define BOOST_TEST_MODULE collectives_process
#define BOOST_TEST_NO_MAIN
#include <boost/test/unit_test.hpp>

#include <signal.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <caf/all.hpp>
#include <caf/io/all.hpp>

#include "actors/collectives/collective_group.hpp"
#include "actors/collectives/collective_mesh.hpp"
#include "actors/plan/collective_algorithms.hpp"
#include "actors/protocol/messages.hpp"
#include "actors/protocol/system_config.hpp"
#include "apps/troupe/line_process.hpp"
#include "plan_reference.hpp"
#include "runtime/io/temp_dir.hpp"
#include "runtime/net/transport/auth.hpp"

using namespace troupe;
using namespace std::chrono_literals;
using runtime::tensor;
using test::join;
using test::rank_blocks;
using test::simulate;
using test::split;
namespace coll = actors::collectives;
namespace fs = std::filesystem;

namespace {

/// The groups every rank process joins, by index: ring with small segments
/// (so that a few MB already pipeline several segments per block) and tree.
enum group_index : int { ring_group = 0, tree_group = 1 };

/// Values of very different magnitudes, so that the summation order shows in
/// the last bits; a function of (seed, rank, numel) only.
std::vector<float> values(std::uint32_t seed, int rank, std::int64_t n) {
  std::mt19937 gen{seed * 7919u + static_cast<std::uint32_t>(rank) * 104729u +
                   static_cast<std::uint32_t>(n)};
  std::uniform_real_distribution<float> u{-1.f, 1.f};
  std::uniform_int_distribution<int> e{-4, 4};
  std::vector<float> v(static_cast<std::size_t>(n));
  for (auto& x : v)
    x = std::ldexp(u(gen), e(gen));
  return v;
}

tensor to_tensor(const std::vector<float>& v) {
  return tensor::from_vector({static_cast<std::int64_t>(v.size())}, v);
}

// ------------------------------------------------------------ rank process

/// The input of `rank` for an op, as both sides compute it.
std::vector<float> op_input(const std::string& kind, std::uint32_t seed, int rank, int n,
                            std::int64_t numel, int root) {
  if (kind == "broadcast")
    return rank == root ? values(seed, root, numel) : std::vector<float>{};
  if (kind == "all_gather")
    return values(seed, rank, coll::partition(numel, n)[static_cast<std::size_t>(rank)].count);
  return values(seed, rank, numel);
}

/// `test --rank-process RANK N KEY_FILE DIR`: one rank. Protocol:
///   -> READY <caf port> <data port>;  <- PEERS host:caf:data ...;  -> WIRED
///   <- OP <kind> <group> <op id> <numel> <seed> <root>
///   -> DONE <op id> <elements>  (result in DIR/op<id>-r<rank>.bin)  or  FAIL <op id> <ms> <error>
///   <- STATS <group>  -> STATS <bytes sent> <messages sent> <ops completed>
int rank_process(int rank, int n, const std::string& key_file, const fs::path& dir) {
  actors::system_config cfg{1};
  cfg.load<caf::io::middleman>();
  caf::actor_system sys{cfg};
  runtime::transport::courier_options o;
  o.name = "rank-" + std::to_string(rank);
  o.key = runtime::transport::load_key(key_file);
  actors::collective_config ring;
  ring.algo = coll::allreduce_algo::ring;
  ring.segment_bytes = std::size_t{256} << 10;
  actors::collective_config tree;
  tree.algo = coll::allreduce_algo::tree;
  actors::collective_mesh mesh{sys, rank, n, {ring, tree}, o, "127.0.0.1"};
  std::printf("READY %u %u\n", mesh.address().caf_port, mesh.address().data_port);
  std::fflush(stdout);
  std::string line;
  while (std::getline(std::cin, line)) {
    std::istringstream in{line};
    std::string cmd;
    in >> cmd;
    if (cmd == "PEERS") {
      std::vector<actors::mesh_address> all;
      std::string item;
      while (in >> item) {
        unsigned cp = 0, dp = 0;
        auto colon = item.find(':');
        std::sscanf(item.c_str() + colon + 1, "%u:%u", &cp, &dp);
        all.push_back({item.substr(0, colon), static_cast<std::uint16_t>(cp),
                       static_cast<std::uint16_t>(dp)});
      }
      try {
        mesh.connect(all, 20s);
        std::printf("WIRED\n");
      } catch (const std::exception& e) {
        std::printf("ERROR %s\n", e.what());
      }
    } else if (cmd == "OP") {
      std::string kind;
      int group = 0, root = 0;
      std::int64_t id = 0, numel = 0;
      std::uint32_t seed = 0;
      in >> kind >> group >> id >> numel >> seed >> root;
      auto v = op_input(kind, seed, rank, n, numel, root);
      tensor x = v.empty() && kind == "broadcast" ? tensor{} : to_tensor(v);
      caf::scoped_actor self{sys};
      const auto& a = mesh.rank_actor(static_cast<std::size_t>(group));
      auto t0 = std::chrono::steady_clock::now();
      auto ms = [&] {
        return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
            .count();
      };
      auto on_result = [&](tensor& t) {
        std::ofstream out(dir / ("op" + std::to_string(id) + "-r" + std::to_string(rank) + ".bin"),
                          std::ios::binary);
        out.write(static_cast<const char*>(t.raw_data()), static_cast<std::streamsize>(t.nbytes()));
        out.close();
        std::printf("DONE %lld %lld\n", static_cast<long long>(id),
                    static_cast<long long>(t.numel()));
      };
      auto on_error = [&](caf::error& e) {
        std::printf("FAIL %lld %.1f %s\n", static_cast<long long>(id), ms(), sys.render(e).c_str());
      };
      auto h = kind == "allreduce"   ? self->request(a, 30s, actors::allreduce_atom::value, id, x)
               : kind == "broadcast" ? self->request(a, 30s, actors::broadcast_atom::value, id,
                                                     static_cast<std::int32_t>(root), x)
               : kind == "reduce_scatter"
                   ? self->request(a, 30s, actors::reduce_scatter_atom::value, id, x)
                   : self->request(a, 30s, actors::all_gather_atom::value, id, x);
      h.receive(on_result, on_error);
    } else if (cmd == "STATS") {
      int group = 0;
      in >> group;
      caf::scoped_actor self{sys};
      self->request(mesh.rank_actor(static_cast<std::size_t>(group)), 10s,
                    actors::coll_stats_atom::value)
          .receive(
              [](actors::collective_stats& s) {
                std::printf("STATS %llu %llu %llu\n", static_cast<unsigned long long>(s.bytes_sent),
                            static_cast<unsigned long long>(s.messages_sent),
                            static_cast<unsigned long long>(s.ops_completed));
              },
              [&](caf::error& e) { std::printf("ERROR %s\n", sys.render(e).c_str()); });
    }
    std::fflush(stdout);
  }
  mesh.stop();
  std::fflush(nullptr);
  std::_Exit(0); // no orderly CAF teardown needed (peers may be gone already)
}

// ------------------------------------------------------------ reference

/// What every rank must return, per rank.
std::vector<std::vector<float>> expected(const std::string& kind, int group, int n,
                                         std::int64_t numel, std::uint32_t seed, int root) {
  std::vector<std::vector<float>> out(static_cast<std::size_t>(n));
  if (kind == "broadcast") {
    for (auto& o : out)
      o = values(seed, root, numel);
    return out;
  }
  if (kind == "all_gather") {
    std::vector<float> all;
    for (int r = 0; r < n; ++r) {
      auto v = op_input(kind, seed, r, n, numel, root);
      all.insert(all.end(), v.begin(), v.end());
    }
    for (auto& o : out)
      o = all;
    return out;
  }
  auto plan = kind == "reduce_scatter" ? coll::ring_reduce_scatter(n)
              : group == tree_group    ? coll::tree_allreduce(n)
                                       : coll::ring_allreduce(n);
  std::vector<rank_blocks> x;
  for (int r = 0; r < n; ++r)
    x.push_back(split(values(seed, r, numel), plan.blocks));
  auto y = simulate(plan, std::move(x));
  for (int r = 0; r < n; ++r)
    out[static_cast<std::size_t>(r)] =
        kind == "reduce_scatter" ? y[static_cast<std::size_t>(r)][static_cast<std::size_t>(r)]
                                 : join(y[static_cast<std::size_t>(r)]);
  // The plan's arithmetic is a sum: close to one computed in double.
  if (kind == "allreduce") {
    std::vector<double> acc(static_cast<std::size_t>(numel), 0.0);
    for (int r = 0; r < n; ++r) {
      auto v = values(seed, r, numel);
      for (std::size_t i = 0; i < v.size(); ++i)
        acc[i] += v[i];
    }
    double err = 0, norm = 0;
    for (std::size_t i = 0; i < acc.size(); ++i) {
      err += std::abs(acc[i] - static_cast<double>(out[0][i]));
      norm += std::abs(acc[i]);
    }
    BOOST_TEST(err <= 1e-6 * norm + 1e-30);
  }
  return out;
}

// ------------------------------------------------------------ driver

fs::path self_exe() {
  return fs::read_symlink("/proc/self/exe");
}

std::vector<std::string> words(const std::string& line) {
  std::istringstream in{line};
  std::vector<std::string> out;
  std::string w;
  while (in >> w)
    out.push_back(w);
  return out;
}

/// N rank processes connected as a mesh.
struct process_group {
  runtime::temp_dir dir{"troupe-coll-"};
  int n;
  std::vector<std::unique_ptr<apps::line_process>> ranks;

  explicit process_group(int size) : n(size) {
    auto key = dir / "cluster.key";
    runtime::transport::save_key(key, runtime::transport::generate_key());
    for (int r = 0; r < n; ++r)
      ranks.push_back(std::make_unique<apps::line_process>(
          std::vector<std::string>{self_exe().string(), "--rank-process", std::to_string(r),
                                   std::to_string(n), key.string(), dir.path().string()},
          dir / ("rank-" + std::to_string(r) + ".log")));
    std::string peers = "PEERS";
    for (auto& p : ranks) {
      auto w = words(p->read_line(20s));
      BOOST_REQUIRE_MESSAGE(w.size() == 3 && w[0] == "READY",
                            "rank did not start: " << p->log_tail());
      peers += " 127.0.0.1:" + w[1] + ":" + w[2];
    }
    for (auto& p : ranks)
      p->send_line(peers);
    for (auto& p : ranks) {
      auto l = p->read_line(30s);
      BOOST_REQUIRE_MESSAGE(l == "WIRED", "rank could not connect: " << l << " " << p->log_tail());
    }
  }

  std::vector<float> read_result(std::int64_t id, int r) {
    auto f = dir / ("op" + std::to_string(id) + "-r" + std::to_string(r) + ".bin");
    std::ifstream in(f, std::ios::binary);
    std::string bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    fs::remove(f);
    std::vector<float> v(bytes.size() / sizeof(float));
    std::memcpy(v.data(), bytes.data(), v.size() * sizeof(float));
    return v;
  }

  /// Runs one op on every rank and checks each result bitwise.
  void check(const std::string& kind, int group, std::int64_t id, std::int64_t numel,
             std::uint32_t seed, int root = 0) {
    BOOST_TEST_CONTEXT("n=" << n << " " << kind << (group == tree_group ? " (tree)" : "")
                            << " numel=" << numel << " root=" << root) {
      auto cmd = "OP " + kind + " " + std::to_string(group) + " " + std::to_string(id) + " " +
                 std::to_string(numel) + " " + std::to_string(seed) + " " + std::to_string(root);
      for (auto& p : ranks)
        p->send_line(cmd);
      std::vector<std::string> answers;
      for (auto& p : ranks)
        answers.push_back(p->read_line(60s));
      auto want = expected(kind, group, n, numel, seed, root);
      for (int r = 0; r < n; ++r) {
        auto w = words(answers[static_cast<std::size_t>(r)]);
        BOOST_REQUIRE_MESSAGE(w.size() >= 2 && w[0] == "DONE",
                              "rank " << r << ": " << answers[static_cast<std::size_t>(r)]);
        auto got = read_result(id, r);
        const auto& ref = want[static_cast<std::size_t>(r)];
        BOOST_REQUIRE_EQUAL(got.size(), ref.size());
        bool same = got.empty() || std::memcmp(got.data(), ref.data(), got.size() * 4) == 0;
        BOOST_TEST(same, "rank " << r << " differs from the plan's result");
        if (kind != "reduce_scatter" && r > 0)
          BOOST_TEST(want[0] == ref); // hence every rank got the same bits
      }
    }
  }

  std::uint64_t bytes_sent(int r, int group) {
    ranks[static_cast<std::size_t>(r)]->send_line("STATS " + std::to_string(group));
    auto w = words(ranks[static_cast<std::size_t>(r)]->read_line(10s));
    BOOST_REQUIRE(w.size() == 4 && w[0] == "STATS");
    return std::stoull(w[1]);
  }
};

const std::vector<std::int64_t> sizes = {1, 7, 1000, 65537, (std::int64_t{1} << 20) + 3};

} // namespace

BOOST_AUTO_TEST_CASE(collectives_across_processes_match_the_plans_bitwise) {
  for (int n = 1; n <= 5; ++n) {
    auto t0 = std::chrono::steady_clock::now();
    process_group g{n};
    std::int64_t id = 0;
    for (auto numel : sizes) {
      auto seed = static_cast<std::uint32_t>(numel % 100000 + 17 * n);
      g.check("allreduce", ring_group, ++id, numel, seed);
      g.check("allreduce", tree_group, ++id, numel, seed);
      g.check("reduce_scatter", ring_group, ++id, numel, seed);
      g.check("all_gather", ring_group, ++id, numel, seed);
      for (int root : {0, n - 1})
        g.check("broadcast", ring_group, ++id, numel, seed + 1, root);
    }
    // Several MB, not divisible by n: the ring's byte count per rank.
    const std::int64_t big = (std::int64_t{3} << 20) + 1;
    std::vector<std::uint64_t> before;
    for (int r = 0; r < n; ++r)
      before.push_back(g.bytes_sent(r, ring_group));
    g.check("allreduce", ring_group, ++id, big, 5);
    const double expect = 2.0 * (n - 1) / n * static_cast<double>(big) * sizeof(float);
    for (int r = 0; r < n; ++r) {
      auto sent =
          static_cast<double>(g.bytes_sent(r, ring_group) - before[static_cast<std::size_t>(r)]);
      BOOST_TEST(std::abs(sent - expect) <= 8.0 * n,
                 "n=" << n << " rank " << r << " sent " << sent << " bytes, expected " << expect);
    }
    BOOST_TEST_MESSAGE(
        n << " process(es): " << id << " ops checked in "
          << std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() << " s");
  }
}

BOOST_AUTO_TEST_CASE(a_killed_rank_process_fails_the_others_within_two_seconds) {
  const int n = 4, victim = 2;
  process_group g{n};
  const std::int64_t numel = (std::int64_t{1} << 20) + 3;
  // Everyone but the victim enters a 4 MB ring all-reduce and waits for it.
  for (int r = 0; r < n; ++r)
    if (r != victim)
      g.ranks[static_cast<std::size_t>(r)]->send_line("OP allreduce 0 1 " + std::to_string(numel) +
                                                      " 3 0");
  std::this_thread::sleep_for(300ms);
  auto t0 = std::chrono::steady_clock::now();
  ::kill(g.ranks[victim]->pid(), SIGKILL);
  for (int r = 0; r < n; ++r) {
    if (r == victim)
      continue;
    auto line = g.ranks[static_cast<std::size_t>(r)]->read_line(5s);
    auto dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    BOOST_TEST_MESSAGE("rank " << r << " after " << dt << " s: " << line);
    BOOST_TEST(line.rfind("FAIL 1 ", 0) == 0, line);
    BOOST_TEST(line.find("peer rank " + std::to_string(victim) + " died") != std::string::npos,
               line);
    BOOST_TEST(dt < 2.0, "rank " << r << " failed only after " << dt << " s");
  }
}

int main(int argc, char** argv) {
  if (argc == 6 && std::string{argv[1]} == "--rank-process")
    return rank_process(std::stoi(argv[2]), std::stoi(argv[3]), argv[4], argv[5]);
  return boost::unit_test::unit_test_main(&init_unit_test, argc, argv);
}
