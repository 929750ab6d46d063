// `bench allreduce` across processes: the rank process (`troupe bench
// allreduce-rank`) and the driver's side that starts, wires and drives them.

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <sstream>
#include <stdexcept>

#include <caf/all.hpp>
#include <caf/io/all.hpp>

#include "actors/collectives/collective_mesh.hpp"
#include "apps/troupe/bench/bench_allreduce_driver.hpp"
#include "apps/troupe/bench/bench_allreduce_runs.hpp"
#include "apps/troupe/commands.hpp"
#include "apps/troupe/line_process.hpp"
#include "actors/protocol/messages.hpp"
#include "actors/protocol/system_config.hpp"
#include "runtime/net/transport/auth.hpp"

namespace troupe::apps::allreduce_bench {

namespace fs = std::filesystem;
namespace rt = troupe::runtime;
namespace coll = troupe::actors::collectives;
using namespace std::chrono_literals;

namespace {

/// The rest of a PEERS line: host:caf:data of every rank, in rank order.
std::vector<actors::mesh_address> parse_peers(std::istream& in) {
  std::vector<actors::mesh_address> all;
  std::string item;
  while (in >> item) {
    actors::mesh_address m;
    unsigned cp = 0, dp = 0;
    auto c1 = item.find(':'), c2 = item.rfind(':');
    if (c1 == std::string::npos || c1 == c2 ||
        std::sscanf(item.c_str() + c1 + 1, "%u:%u", &cp, &dp) != 2)
      throw std::runtime_error("bad peer address '" + item + "'");
    m.host = item.substr(0, c1);
    m.caf_port = static_cast<std::uint16_t>(cp);
    m.data_port = static_cast<std::uint16_t>(dp);
    all.push_back(m);
  }
  return all;
}

} // namespace

/// `troupe bench allreduce-rank`: one rank of the cross-process group. Line
/// protocol on stdin/stdout:
///   -> READY <caf port> <data port>
///   <- PEERS host:caf:data ... (every rank, in rank order)
///   -> WIRED
///   <- RUN <numel> <warmup> <reps> <iters>
///   -> TIMES <bytes sent per op> <seconds per op of each repetition ...>   or  ERROR <text>
/// End of input ends the process.
int run_rank(const rank_flags& f) {
  troupe::actors::system_config cfg{static_cast<unsigned>(std::max(1, f.threads))};
  cfg.load<caf::io::middleman>();
  caf::actor_system sys{cfg};
  rt::transport::courier_options o;
  o.name = "bench-rank-" + std::to_string(f.rank);
  o.key = rt::transport::load_key(f.key_file);
  actors::collective_config c;
  c.algo = coll::parse_allreduce_algo(f.algo);
  c.segment_bytes = f.segment_bytes;
  actors::collective_mesh mesh{sys, f.rank, f.ranks, {c}, o, "127.0.0.1"};
  auto a = mesh.address();
  std::printf("READY %u %u\n", a.caf_port, a.data_port);
  std::fflush(stdout);

  auto bytes_sent = [&] {
    caf::scoped_actor self{sys};
    std::uint64_t b = 0;
    self->request(mesh.rank_actor(), 10s, troupe::actors::coll_stats_atom::value)
        .receive([&](troupe::actors::collective_stats& s) { b = s.bytes_sent; }, [](caf::error&) {});
    return b;
  };
  std::vector<int> me{f.rank};
  caf::actor barrier;
  std::int64_t first_op = 1;
  std::string line;
  while (std::getline(std::cin, line)) {
    std::istringstream in{line};
    std::string cmd;
    in >> cmd;
    try {
      if (cmd == "PEERS") {
        mesh.connect(parse_peers(in), 30s);
        barrier = sys.spawn(driver, std::vector<caf::actor>{mesh.rank_actor()},
                            constant_inputs(me, 1), expected_sum(f.ranks), barrier_ops);
        std::printf("WIRED\n");
      } else if (cmd == "RUN") {
        std::int64_t numel = 0;
        int warmup = 0, reps = 0, iters = 0;
        if (!(in >> numel >> warmup >> reps >> iters) || numel < 1 || reps < 1 || iters < 1)
          throw std::runtime_error("bad RUN line '" + line + "'");
        auto timed = sys.spawn(driver, std::vector<caf::actor>{mesh.rank_actor()},
                               constant_inputs(me, numel), expected_sum(f.ranks), first_op);
        first_op += std::int64_t{1} << 30;
        if (warmup > 0)
          run_driver(sys, timed, warmup);
        auto before = bytes_sent();
        auto t = measure(sys, timed, barrier, 0, reps, iters);
        auto sent = bytes_sent() - before;
        caf::anon_send_exit(timed, caf::exit_reason::user_shutdown);
        // Bytes of the timed ops alone (the barriers are 1-element trees).
        auto barrier_bytes =
            static_cast<std::uint64_t>(reps) * 4 * coll::tree_allreduce(f.ranks).length();
        std::printf("TIMES %.1f",
                    static_cast<double>(sent - std::min(sent, barrier_bytes)) / (reps * iters));
        for (double x : t)
          std::printf(" %.9g", x);
        std::printf("\n");
      } else {
        throw std::runtime_error("unknown command '" + cmd + "'");
      }
    } catch (const std::exception& e) {
      std::printf("ERROR %s\n", e.what());
    }
    std::fflush(stdout);
  }
  mesh.stop();
  std::fflush(nullptr);
  std::_Exit(exit_ok); // a benchmark rank needs no orderly CAF teardown
}

std::vector<process_result> bench_processes(const allreduce_flags& f,
                                            const std::vector<std::size_t>& sizes,
                                            const fs::path& dir) {
  auto key_file = dir / "cluster.key";
  rt::transport::save_key(key_file, rt::transport::generate_key());
  auto exe = self_exe().string();
  std::vector<std::unique_ptr<line_process>> procs;
  for (int r = 0; r < f.ranks; ++r)
    procs.push_back(std::make_unique<line_process>(
        std::vector<std::string>{exe, "--log-level", "error", "bench", "allreduce-rank", "--rank",
                                 std::to_string(r), "--ranks", std::to_string(f.ranks),
                                 "--key-file", key_file.string(), "--algo", f.algo, "--threads",
                                 std::to_string(f.threads > 0 ? f.threads : 1), "--segment-bytes",
                                 std::to_string(f.segment_bytes)},
        dir / ("rank-" + std::to_string(r) + ".log")));
  std::string peers = "PEERS";
  for (auto& p : procs) {
    auto w = words(p->read_line(30s));
    if (w.size() != 3 || w[0] != "READY")
      throw std::runtime_error("rank process did not start: " + p->log_tail());
    peers += " 127.0.0.1:" + w[1] + ":" + w[2];
  }
  for (auto& p : procs)
    p->send_line(peers);
  for (auto& p : procs) {
    auto l = p->read_line(60s);
    if (l != "WIRED")
      throw std::runtime_error("rank process could not connect: " + l);
  }
  std::vector<process_result> out;
  for (auto bytes : sizes) {
    int iters = iterations_for(bytes);
    auto cmd = "RUN " + std::to_string(bytes / sizeof(float)) + " " + std::to_string(f.warmup) +
               " " + std::to_string(f.reps) + " " + std::to_string(iters);
    for (auto& p : procs)
      p->send_line(cmd);
    std::vector<double> worst(static_cast<std::size_t>(f.reps), 0.0);
    double sent = 0;
    auto limit = std::chrono::duration_cast<std::chrono::milliseconds>(
        op_timeout * (f.warmup + f.reps * (iters + 1)));
    for (auto& p : procs) {
      auto l = p->read_line(limit);
      auto w = words(l);
      if (w.size() != static_cast<std::size_t>(f.reps) + 2 || w[0] != "TIMES")
        throw std::runtime_error("rank process: " + l);
      sent += std::stod(w[1]);
      for (int r = 0; r < f.reps; ++r)
        worst[static_cast<std::size_t>(r)] = std::max(
            worst[static_cast<std::size_t>(r)], std::stod(w[static_cast<std::size_t>(r) + 2]));
    }
    std::printf("  %d processes %6s  %9.3f ms\n", f.ranks, human_bytes(bytes).c_str(),
                summary::of(worst).median * 1e3);
    out.push_back({std::move(worst), sent / f.ranks});
    std::fflush(stdout);
  }
  for (auto& p : procs)
    p->finish();
  return out;
}

} // namespace troupe::apps::allreduce_bench
