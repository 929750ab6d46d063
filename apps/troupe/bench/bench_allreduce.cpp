// `troupe bench allreduce`: f32 all-reduce of each size in --sizes over
// --ranks N ranks:
//   in process:   N collective rank actors in one actor system (no courier);
//   processes:    N rank processes (this executable re-run as the hidden
//                 `bench allreduce-rank`), each with its own actor system and
//                 courier, connected as a collective_mesh over 127.0.0.1 (CAF
//                 for control and blocks <= 64 KiB, the data plane above);
//   gloo:         bench/peers troupe_peer_gloo, N processes, gloo::allreduce
//                 with Algorithm::RING over Gloo's TCP transport on 127.0.0.1
//                 (file-store rendezvous);
//   mpi:          bench/peers troupe_peer_mpi under mpirun -np N with the ob1 PML
//                 and the tcp,self BTLs on lo (TCP only: no shared memory, no UCX).
// Both by default; --in-process or --processes picks one (the peers run with
// the processes; --turns T lets troupe, gloo and mpi take turns T times).
// Each size: `warmup` untimed ops, then `reps` timed repetitions of `iters`
// back-to-back ops (iters = 16 MiB / size, 1..50), each after a barrier; a
// repetition's time is its slowest rank's; time per op is the median over
// repetitions. algbw = bytes / time, busbw = algbw * 2(n-1)/n (nccl-tests).
// The machine's memcpy bandwidth (64 MiB buffers, one thread) is measured in
// the same run; in-process busbw is reported as a fraction of it.

#include "apps/troupe/bench/bench_allreduce.hpp"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <nlohmann/json.hpp>

#include "actors/plan/collective_algorithms.hpp"
#include "actors/collectives/collective_group.hpp"
#include "actors/collectives/collective_mesh.hpp"
#include "apps/troupe/bench/bench_util.hpp"
#include "apps/troupe/line_process.hpp"
#include "runtime/error.hpp"
#include "runtime/net/messages.hpp"
#include "runtime/net/system_config.hpp"
#include "runtime/io/temp_dir.hpp"
#include "runtime/tensor.hpp"
#include "runtime/net/transport/auth.hpp"
#include "runtime/net/transport/courier.hpp"

namespace troupe::apps {

namespace {

namespace fs = std::filesystem;
namespace rt = troupe::runtime;
namespace coll = troupe::actors::collectives;
using clock_type = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr const char* gloo_peer = "troupe_peer_gloo";
constexpr const char* mpi_peer = "troupe_peer_mpi";
constexpr const char* peer_missing = "peer not built: scripts/bootstrap --peers";
/// An op that takes longer means a rank is stuck: give up.
constexpr auto op_timeout = 120s;

struct allreduce_flags {
  int ranks = 4;
  std::string sizes = "4K,64K,1M,4M,64M";
  bool processes_only = false;
  bool in_process_only = false;
  bool no_peers = false;
  std::string algo = "auto";
  int reps = 10;
  int turns = 1;
  int warmup = 3;
  int threads = 0; ///< CAF scheduler threads per actor system (0: cores, 1 in rank processes)
  std::size_t segment_bytes = actors::collective_config{}.segment_bytes;
  std::string json;
};

struct rank_flags {
  int rank = 0;
  int ranks = 1;
  std::string key_file;
  std::string algo = "auto";
  int threads = 1;
  std::size_t segment_bytes = actors::collective_config{}.segment_bytes;
};

/// Median, min and max of seconds per op.
struct timing {
  double median = 0, min = 0, max = 0;
  static timing of(std::vector<double> v) {
    timing t;
    if (v.empty())
      return t;
    std::sort(v.begin(), v.end());
    auto n = v.size();
    t.median = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
    t.min = v.front();
    t.max = v.back();
    return t;
  }
};

/// Ops per timed repetition: 16 MiB of buffers, 1 to 50 ops.
int iterations_for(std::size_t bytes) {
  return static_cast<int>(std::clamp<std::size_t>((std::size_t{16} << 20) / bytes, 1, 50));
}

std::string human(std::size_t b) {
  char buf[32];
  if (b >= (std::size_t{1} << 30) && b % (std::size_t{1} << 30) == 0)
    std::snprintf(buf, sizeof buf, "%zuG", b >> 30);
  else if (b >= (std::size_t{1} << 20) && b % (std::size_t{1} << 20) == 0)
    std::snprintf(buf, sizeof buf, "%zuM", b >> 20);
  else if (b >= 1024 && b % 1024 == 0)
    std::snprintf(buf, sizeof buf, "%zuK", b >> 10);
  else
    std::snprintf(buf, sizeof buf, "%zu", b);
  return buf;
}

double bus_factor(int n) {
  return n > 1 ? 2.0 * (n - 1) / n : 0.0;
}

std::string env_or_unset(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "(unset)";
}

/// memcpy GB/s (bytes copied / s) over 64 MiB buffers on this thread, median of 7.
double memcpy_gbps() {
  const std::size_t bytes = std::size_t{64} << 20;
  auto src = rt::tensor::empty(rt::dtype::u8, {static_cast<std::int64_t>(bytes)});
  auto dst = rt::tensor::empty(rt::dtype::u8, {static_cast<std::int64_t>(bytes)});
  std::memset(src.mutable_raw_data(), 1, bytes);
  std::memset(dst.mutable_raw_data(), 2, bytes);
  std::vector<double> rates;
  for (int r = 0; r < 8; ++r) {
    auto t0 = clock_type::now();
    std::memcpy(dst.mutable_raw_data(), src.raw_data(), bytes);
    double s = std::chrono::duration<double>(clock_type::now() - t0).count();
    if (r > 0) // the first touches the pages
      rates.push_back(static_cast<double>(bytes) / s / 1e9);
  }
  volatile auto sink = static_cast<const char*>(dst.raw_data())[bytes / 2];
  (void)sink;
  return timing::of(rates).median;
}

// ------------------------------------------------------------------ driver

using bench_run_atom = caf::atom_constant<caf::atom("benchrun")>;

/// Runs all-reduces over `ranks` (rank r reduces inputs[r]) back to back: the
/// next op starts when every rank has answered the previous one. Each result
/// is spot-checked against `expect` (every input is constant). Answers
/// (bench_run_atom, iters) with the seconds the ops took.
struct driver_state {
  std::vector<caf::actor> ranks;
  std::vector<rt::tensor> inputs;
  float expect = 0;
  std::int64_t next_op = 0;
  int left = 0;
  std::size_t pending = 0;
  bool failed = false;
  clock_type::time_point t0;
  caf::response_promise rp;
  static inline const char* name = "allreduce_bench_driver";
};
using driver_actor = caf::stateful_actor<driver_state>;

bool spot_check(const rt::tensor& t, float expect) {
  auto n = t.numel();
  if (t.type() != rt::dtype::f32 || n < 1)
    return false;
  const float* p = t.data<float>();
  return p[0] == expect && p[n / 2] == expect && p[n - 1] == expect;
}

void issue(driver_actor* self) {
  auto& st = self->state;
  auto op = st.next_op++;
  st.pending = st.ranks.size();
  // No timeout per op: each would wake CAF's clock thread, which the timed
  // loop would pay for; run_driver's deadline covers a stuck rank.
  for (std::size_t r = 0; r < st.ranks.size(); ++r)
    self->request(st.ranks[r], caf::infinite, rt::allreduce_atom::value, op, st.inputs[r])
        .then(
            [self](rt::tensor& t) {
              auto& s = self->state;
              if (s.failed)
                return;
              if (!spot_check(t, s.expect)) {
                s.failed = true;
                s.rp.deliver(caf::make_error(caf::sec::runtime_error,
                                             "all-reduce result differs from the expected sum"));
                return;
              }
              if (--s.pending > 0)
                return;
              if (--s.left > 0)
                return issue(self);
              s.rp.deliver(std::chrono::duration<double>(clock_type::now() - s.t0).count());
            },
            [self](caf::error& e) {
              auto& s = self->state;
              if (!s.failed) {
                s.failed = true;
                s.rp.deliver(std::move(e));
              }
            });
}

caf::behavior driver(driver_actor* self, std::vector<caf::actor> ranks,
                     std::vector<rt::tensor> inputs, float expect, std::int64_t first_op) {
  self->state.ranks = std::move(ranks);
  self->state.inputs = std::move(inputs);
  self->state.expect = expect;
  self->state.next_op = first_op;
  return {
      [self](bench_run_atom, std::int32_t iters) -> caf::result<double> {
        auto& st = self->state;
        if (st.failed || iters < 1)
          return caf::make_error(caf::sec::runtime_error, "driver failed before");
        st.left = iters;
        st.t0 = clock_type::now();
        st.rp = self->make_response_promise();
        issue(self);
        return st.rp;
      },
  };
}

/// Constant inputs (rank r holds r + 1), so the sum n(n + 1)/2 is exact.
std::vector<rt::tensor> constant_inputs(const std::vector<int>& ranks, std::int64_t numel) {
  std::vector<rt::tensor> out;
  for (int r : ranks) {
    auto t = rt::tensor::empty(rt::dtype::f32, {numel});
    std::fill_n(t.mutable_data<float>(), numel, static_cast<float>(r + 1));
    out.push_back(std::move(t));
  }
  return out;
}

float expected_sum(int n) {
  return static_cast<float>(n) * static_cast<float>(n + 1) / 2.f;
}

/// Seconds of one driver run; throws with the error.
double run_driver(caf::actor_system& sys, const caf::actor& d, int iters) {
  caf::scoped_actor self{sys};
  double s = 0;
  std::string err;
  self->request(d, op_timeout * iters, bench_run_atom::value, static_cast<std::int32_t>(iters))
      .receive([&](double x) { s = x; }, [&](caf::error& e) { err = sys.render(e); });
  if (!err.empty())
    throw std::runtime_error("all-reduce failed: " + err);
  return s;
}

// Op ids: the timed ops count up from 1, the barriers from here (equal on
// every rank because every rank runs the same commands).
constexpr std::int64_t barrier_ops = std::int64_t{1} << 40;

/// One size: warm-up, then per repetition a barrier and `iters` timed ops.
/// Returns seconds per op of each repetition.
std::vector<double> measure(caf::actor_system& sys, const caf::actor& timed,
                            const caf::actor& barrier, int warmup, int reps, int iters) {
  if (warmup > 0)
    run_driver(sys, timed, warmup);
  std::vector<double> out;
  for (int r = 0; r < reps; ++r) {
    run_driver(sys, barrier, 1);
    out.push_back(run_driver(sys, timed, iters) / iters);
  }
  return out;
}

// ------------------------------------------------------------------ in process

std::vector<timing> bench_in_process(const allreduce_flags& f,
                                     const std::vector<std::size_t>& sizes,
                                     coll::allreduce_algo algo) {
  rt::system_config cfg{static_cast<unsigned>(std::max(0, f.threads))};
  caf::actor_system sys{cfg};
  actors::collective_config base;
  base.algo = algo;
  base.segment_bytes = f.segment_bytes;
  auto group = actors::spawn_collective_group(sys, f.ranks, base);
  std::vector<int> all(static_cast<std::size_t>(f.ranks));
  for (int r = 0; r < f.ranks; ++r)
    all[static_cast<std::size_t>(r)] = r;
  auto barrier =
      sys.spawn(driver, group, constant_inputs(all, 1), expected_sum(f.ranks), barrier_ops);
  std::vector<timing> out;
  std::int64_t first_op = 1;
  for (auto bytes : sizes) {
    auto numel = static_cast<std::int64_t>(bytes / sizeof(float));
    auto timed =
        sys.spawn(driver, group, constant_inputs(all, numel), expected_sum(f.ranks), first_op);
    first_op += std::int64_t{1} << 30;
    int iters = iterations_for(bytes);
    out.push_back(timing::of(measure(sys, timed, barrier, f.warmup, f.reps, iters)));
    caf::anon_send_exit(timed, caf::exit_reason::user_shutdown);
    std::printf("  in process  %6s  %9.3f ms\n", human(bytes).c_str(), out.back().median * 1e3);
    std::fflush(stdout);
  }
  caf::anon_send_exit(barrier, caf::exit_reason::user_shutdown);
  for (auto& r : group)
    caf::anon_send_exit(r, caf::exit_reason::user_shutdown);
  return out;
}

// ------------------------------------------------------------------ rank process

/// `troupe bench allreduce-rank`: one rank of the cross-process group. Line
/// protocol on stdin/stdout:
///   -> READY <caf port> <data port>
///   <- PEERS host:caf:data ... (every rank, in rank order)
///   -> WIRED
///   <- RUN <numel> <warmup> <reps> <iters>
///   -> TIMES <bytes sent per op> <seconds per op of each repetition ...>   or  ERROR <text>
/// End of input ends the process.
int run_rank(const rank_flags& f) {
  rt::system_config cfg{static_cast<unsigned>(std::max(1, f.threads))};
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
    self->request(mesh.rank_actor(), 10s, rt::coll_stats_atom::value)
        .receive([&](rt::collective_stats& s) { b = s.bytes_sent; }, [](caf::error&) {});
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
        mesh.connect(all, 30s);
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

struct process_result {
  std::vector<double> per_op;     ///< seconds per op of each repetition (slowest rank)
  double bytes_sent_per_rank = 0; ///< per op, averaged over ranks
};

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
    std::printf("  %d processes %6s  %9.3f ms\n", f.ranks, human(bytes).c_str(),
                timing::of(worst).median * 1e3);
    out.push_back({std::move(worst), sent / f.ranks});
    std::fflush(stdout);
  }
  for (auto& p : procs)
    p->finish();
  return out;
}

// ------------------------------------------------------------------ peers

fs::path peer_path(const char* name) {
  return self_exe().parent_path() / name;
}

bool is_executable(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec) && ::access(p.c_str(), X_OK) == 0;
}

std::optional<fs::path> find_on_path(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::istringstream in{path ? path : ""};
  std::string d;
  while (std::getline(in, d, ':'))
    if (!d.empty() && is_executable(fs::path{d} / name))
      return fs::path{d} / name;
  return std::nullopt;
}

/// "--sizes b:iters,..." as the peers take it.
std::string peer_sizes(const std::vector<std::size_t>& sizes) {
  std::string s;
  for (auto b : sizes)
    s += (s.empty() ? "" : ",") + std::to_string(b) + ":" + std::to_string(iterations_for(b));
  return s;
}

/// Reads the peer's JSON lines (rank 0 prints one per size).
std::vector<std::vector<double>> read_peer_rows(line_process& p,
                                                const std::vector<std::size_t>& sizes,
                                                std::chrono::milliseconds limit) {
  std::vector<std::vector<double>> out;
  while (out.size() < sizes.size()) {
    auto l = p.read_line(limit);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(l);
    } catch (const nlohmann::json::exception&) {
      continue; // the peer's own chatter
    }
    if (!j.contains("bytes"))
      continue;
    if (j.at("bytes").get<std::size_t>() != sizes[out.size()])
      throw std::runtime_error("peer reported size " + j.at("bytes").dump() + ", expected " +
                               std::to_string(sizes[out.size()]));
    if (!j.value("ok", false))
      throw std::runtime_error("peer's all-reduce result was wrong at " + j.at("bytes").dump());
    out.push_back(j.at("seconds_per_op").get<std::vector<double>>());
  }
  return out;
}

std::chrono::milliseconds peer_limit(const allreduce_flags& f) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(op_timeout *
                                                               (f.warmup + f.reps * 201));
}

std::vector<std::vector<double>> bench_gloo(const allreduce_flags& f,
                                            const std::vector<std::size_t>& sizes,
                                            const fs::path& exe, const fs::path& dir, int turn) {
  auto store = dir / ("gloo-store-" + std::to_string(turn)); // a fresh rendezvous each time
  fs::create_directories(store);
  std::vector<std::unique_ptr<line_process>> procs;
  for (int r = 0; r < f.ranks; ++r)
    procs.push_back(std::make_unique<line_process>(
        std::vector<std::string>{exe.string(), "--rank", std::to_string(r), "--size",
                                 std::to_string(f.ranks), "--store", store.string(), "--sizes",
                                 peer_sizes(sizes), "--warmup", std::to_string(f.warmup), "--reps",
                                 std::to_string(f.reps)},
        dir / ("gloo-" + std::to_string(r) + ".log")));
  auto rows = read_peer_rows(*procs.front(), sizes, peer_limit(f));
  for (auto& p : procs)
    if (int s = p->finish(10s); s != 0)
      throw std::runtime_error("gloo peer exited with status " + std::to_string(s) + ": " +
                               p->log_tail());
  return rows;
}

std::vector<std::string> mpirun_command(const fs::path& mpirun, const fs::path& exe, int n) {
  return {mpirun.string(),
          "--allow-run-as-root",
          "--oversubscribe",
          "-np",
          std::to_string(n),
          "--mca",
          "pml",
          "ob1",
          "--mca",
          "btl",
          "tcp,self",
          "--mca",
          "btl_tcp_if_include",
          "lo",
          exe.string()};
}

std::vector<std::vector<double>> bench_mpi(const allreduce_flags& f,
                                           const std::vector<std::size_t>& sizes,
                                           const fs::path& mpirun, const fs::path& exe,
                                           const fs::path& dir) {
  auto argv = mpirun_command(mpirun, exe, f.ranks);
  argv.insert(argv.end(), {"--sizes", peer_sizes(sizes), "--warmup", std::to_string(f.warmup),
                           "--reps", std::to_string(f.reps)});
  line_process p{argv, dir / "mpi.log"};
  auto rows = read_peer_rows(p, sizes, peer_limit(f));
  if (int s = p.finish(10s); s != 0)
    throw std::runtime_error("mpirun exited with status " + std::to_string(s) + ": " +
                             p.log_tail());
  return rows;
}

// ------------------------------------------------------------------ report

nlohmann::json timing_json(const timing& t, std::size_t bytes, int n) {
  double algbw = t.median > 0 ? static_cast<double>(bytes) / t.median / 1e9 : 0;
  return {{"time_ms", t.median * 1e3},
          {"time_ms_min", t.min * 1e3},
          {"time_ms_max", t.max * 1e3},
          {"algbw_gbps", algbw},
          {"busbw_gbps", algbw * bus_factor(n)}};
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v)
    s += (s.empty() ? "" : " ") + x;
  return s;
}

int bench_allreduce(const allreduce_flags& f) {
  if (f.processes_only && f.in_process_only)
    throw rt::input_error("--processes and --in-process exclude each other (neither: both)");
  auto sizes = parse_byte_sizes(f.sizes);
  auto algo = coll::parse_allreduce_algo(f.algo);
  const bool in_process = !f.processes_only;
  const bool processes = !f.in_process_only;
  const int n = f.ranks;
  rt::temp_dir dir{"troupe-allreduce-"};

  // Peers: built next to this executable, mpirun on PATH.
  std::optional<fs::path> gloo, mpi, mpirun;
  std::string gloo_note, mpi_note;
  if (processes && !f.no_peers) {
    if (auto p = peer_path(gloo_peer); is_executable(p))
      gloo = p;
    else
      gloo_note = std::string{"gloo "} + peer_missing;
    mpirun = find_on_path("mpirun");
    if (auto p = peer_path(mpi_peer); is_executable(p) && mpirun)
      mpi = p;
    else
      mpi_note = std::string{"mpi "} + peer_missing + (mpirun ? "" : " (no mpirun on PATH)");
  }

  const auto load_before = load_average();
  const auto cores = std::thread::hardware_concurrency();
  std::printf(
      "troupe bench allreduce: f32 sum over %d rank(s), algo %s (tree below %zu bytes "
      "when auto), %d warm-up op(s), median of %d repetition(s)\n%u cores, load average %s\n",
      n, f.algo.c_str(), coll::default_tree_threshold_bytes, f.warmup, f.reps, cores,
      load_before.c_str());
  std::fflush(stdout);
  const double memcpy_bw = memcpy_gbps();
  std::printf("memcpy (64 MiB buffers, 1 thread): %.2f GB/s\n", memcpy_bw);
  std::fflush(stdout);

  std::vector<timing> ours_in;
  if (in_process)
    ours_in = bench_in_process(f, sizes, algo);
  // Across processes: troupe, gloo and mpi take turns, `turns` times, so
  // that a change of machine load hits all three; each one's repetitions are
  // pooled (median over all of them).
  std::vector<std::vector<double>> ours_all(sizes.size()), gloo_all(sizes.size()),
      mpi_all(sizes.size());
  std::vector<double> sent(sizes.size(), 0.0);
  bool run_gloo = gloo.has_value() && n > 1, run_mpi = mpi.has_value();
  if (gloo && n == 1)
    gloo_note = "gloo: not run for 1 rank";
  auto pool = [](std::vector<std::vector<double>>& into, std::vector<std::vector<double>> rows) {
    for (std::size_t i = 0; i < rows.size() && i < into.size(); ++i)
      into[i].insert(into[i].end(), rows[i].begin(), rows[i].end());
  };
  for (int turn = 0; processes && turn < f.turns; ++turn) {
    if (f.turns > 1)
      std::printf("turn %d of %d\n", turn + 1, f.turns);
    auto ours = bench_processes(f, sizes, dir.path());
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      ours_all[i].insert(ours_all[i].end(), ours[i].per_op.begin(), ours[i].per_op.end());
      sent[i] = ours[i].bytes_sent_per_rank;
    }
    if (run_gloo) {
      try {
        pool(gloo_all, bench_gloo(f, sizes, *gloo, dir.path(), turn));
      } catch (const std::exception& e) {
        gloo_note = std::string{"gloo peer failed: "} + e.what();
        run_gloo = false;
      }
    }
    if (run_mpi) {
      try {
        pool(mpi_all, bench_mpi(f, sizes, *mpirun, *mpi, dir.path()));
      } catch (const std::exception& e) {
        mpi_note = std::string{"mpi peer failed: "} + e.what();
        run_mpi = false;
      }
    }
  }
  std::vector<timing> ours_t, gloo_rows, mpi_rows;
  for (std::size_t i = 0; processes && i < sizes.size(); ++i) {
    ours_t.push_back(timing::of(ours_all[i]));
    if (run_gloo)
      gloo_rows.push_back(timing::of(gloo_all[i]));
    if (run_mpi)
      mpi_rows.push_back(timing::of(mpi_all[i]));
  }

  // Tables.
  const double bf = bus_factor(n);
  auto algo_of = [&](std::size_t bytes) {
    return coll::to_string(
        coll::choose_allreduce(bytes, n, coll::default_tree_threshold_bytes, algo));
  };
  auto bw = [](std::size_t bytes, const timing& t) {
    return t.median > 0 ? static_cast<double>(bytes) / t.median / 1e9 : 0.0;
  };
  if (in_process) {
    std::printf("\nin process: %d rank actors, one actor system\n", n);
    std::printf("%8s %5s %6s %10s %10s %10s %14s\n", "size", "algo", "iters", "time ms",
                "algbw GB/s", "busbw GB/s", "busbw/memcpy");
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      double a = bw(sizes[i], ours_in[i]);
      std::printf("%8s %5s %6d %10.3f %10.3f %10.3f %13.1f%%\n", human(sizes[i]).c_str(),
                  algo_of(sizes[i]).c_str(), iterations_for(sizes[i]), ours_in[i].median * 1e3, a,
                  a * bf, memcpy_bw > 0 ? 100.0 * a * bf / memcpy_bw : 0.0);
    }
  }
  if (processes) {
    std::printf("\nacross %d processes on 127.0.0.1 (troupe: courier, data plane above 64 KiB; "
                "gloo: tcp; mpi: ob1 + tcp,self on lo)\n",
                n);
    std::printf("%8s %5s %10s %10s %10s %10s %10s %10s %11s %10s\n", "size", "algo", "troupe ms",
                "busbw GB/s", "gloo ms", "busbw GB/s", "mpi ms", "busbw GB/s", "troupe/gloo",
                "troupe/mpi");
    auto cell = [](const std::vector<timing>& rows, std::size_t i, double x) {
      char buf[32];
      if (i >= rows.size())
        return std::string{"-"};
      std::snprintf(buf, sizeof buf, "%.3f", x);
      return std::string{buf};
    };
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      const auto& t = ours_t[i];
      double g = i < gloo_rows.size() ? gloo_rows[i].median : 0;
      double m = i < mpi_rows.size() ? mpi_rows[i].median : 0;
      std::printf("%8s %5s %10.3f %10.3f %10s %10s %10s %10s %11s %10s\n", human(sizes[i]).c_str(),
                  algo_of(sizes[i]).c_str(), t.median * 1e3, bw(sizes[i], t) * bf,
                  cell(gloo_rows, i, g * 1e3).c_str(),
                  cell(gloo_rows, i, g > 0 ? sizes[i] / g / 1e9 * bf : 0).c_str(),
                  cell(mpi_rows, i, m * 1e3).c_str(),
                  cell(mpi_rows, i, m > 0 ? sizes[i] / m / 1e9 * bf : 0).c_str(),
                  cell(gloo_rows, i, t.median > 0 ? g / t.median : 0).c_str(),
                  cell(mpi_rows, i, t.median > 0 ? m / t.median : 0).c_str());
    }
    std::printf("troupe/peer = peer time / troupe time (> 1: troupe faster)\n");
    for (const auto& note : {gloo_note, mpi_note})
      if (!note.empty())
        std::printf("note: %s\n", note.c_str());
    if (mpi)
      std::printf("mpi: %s --sizes ...\n", join(mpirun_command(*mpirun, *mpi, n)).c_str());
  }
  const auto load_after = load_average();
  std::printf("load average after: %s%s; env OPENBLAS_CORETYPE=%s\n", load_after.c_str(),
              std::atof(load_after.c_str()) >= cores ? " (busy machine: figures are noisy)" : "",
              env_or_unset("OPENBLAS_CORETYPE").c_str());

  if (!f.json.empty()) {
    nlohmann::json rows = nlohmann::json::array();
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      nlohmann::json row{{"size_bytes", sizes[i]},
                         {"ranks", n},
                         {"algo", algo_of(sizes[i])},
                         {"iterations", iterations_for(sizes[i])}};
      if (in_process) {
        auto j = timing_json(ours_in[i], sizes[i], n);
        j["busbw_over_memcpy"] = memcpy_bw > 0 ? j["busbw_gbps"].get<double>() / memcpy_bw : 0.0;
        row["in_process"] = j;
      }
      if (processes) {
        auto j = timing_json(ours_t[i], sizes[i], n);
        j["bytes_sent_per_rank_per_op"] = sent[i];
        row["processes"] = j;
        const auto& t = ours_t[i];
        row["gloo"] =
            i < gloo_rows.size() ? timing_json(gloo_rows[i], sizes[i], n) : nlohmann::json();
        row["mpi"] = i < mpi_rows.size() ? timing_json(mpi_rows[i], sizes[i], n) : nlohmann::json();
        row["troupe_over_gloo"] = i < gloo_rows.size() && t.median > 0
                                      ? nlohmann::json(gloo_rows[i].median / t.median)
                                      : nlohmann::json();
        row["troupe_over_mpi"] = i < mpi_rows.size() && t.median > 0
                                     ? nlohmann::json(mpi_rows[i].median / t.median)
                                     : nlohmann::json();
      }
      rows.push_back(row);
    }
    nlohmann::json doc{
        {"benchmark", "allreduce"},
        {"ranks", n},
        {"algo", f.algo},
        {"tree_threshold_bytes", coll::default_tree_threshold_bytes},
        {"warmup", f.warmup},
        {"reps", f.reps},
        {"turns", f.turns},
        {"timing",
         "median over repetitions of the slowest rank's seconds per op; algbw = bytes / time, "
         "busbw = algbw * 2(n-1)/n"},
        {"memcpy_gbps", memcpy_bw},
        {"cores", cores},
        {"load_average_before", load_before},
        {"load_average_after", load_after},
        {"gloo_note", gloo_note},
        {"mpi_note", mpi_note},
        {"mpi_command",
         mpi ? nlohmann::json(join(mpirun_command(*mpirun, *mpi, n))) : nlohmann::json()},
        {"rows", rows}};
    write_json_file(f.json, doc);
    std::printf("wrote %s\n", f.json.c_str());
  }
  std::fflush(stdout);
  return exit_ok;
}

} // namespace

std::vector<std::size_t> parse_byte_sizes(const std::string& list) {
  std::vector<std::size_t> out;
  std::size_t start = 0;
  auto bad = [](const std::string& item, const std::string& why) {
    return rt::input_error("--sizes: '" + item + "' " + why +
                           " (expected a list like 4K,64K,1M,4M,64M; K, M, G = 1024^k bytes)");
  };
  while (start <= list.size()) {
    auto comma = list.find(',', start);
    auto item = list.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    start = comma == std::string::npos ? list.size() + 1 : comma + 1;
    std::size_t i = 0;
    std::uint64_t v = 0;
    while (i < item.size() && std::isdigit(static_cast<unsigned char>(item[i]))) {
      if (v > (std::uint64_t{1} << 40))
        throw bad(item, "is too large");
      v = v * 10 + static_cast<std::uint64_t>(item[i] - '0');
      ++i;
    }
    if (i == 0)
      throw bad(item, "is not a size");
    std::uint64_t unit = 1;
    if (i < item.size()) {
      switch (std::toupper(static_cast<unsigned char>(item[i]))) {
      case 'K':
        unit = 1024;
        break;
      case 'M':
        unit = 1024 * 1024;
        break;
      case 'G':
        unit = 1024 * 1024 * 1024;
        break;
      case 'B':
        break;
      default:
        throw bad(item, "has an unknown unit");
      }
      ++i;
      if (i < item.size() && unit > 1 && std::toupper(static_cast<unsigned char>(item[i])) == 'B')
        ++i;
      if (i != item.size())
        throw bad(item, "is not a size");
    }
    auto bytes = v * unit;
    if (bytes == 0)
      throw bad(item, "is zero");
    if (bytes % 4 != 0)
      throw bad(item, "is not a multiple of 4 bytes (f32 elements)");
    if (bytes > (std::uint64_t{1} << 30))
      throw bad(item, "is larger than 1G");
    out.push_back(static_cast<std::size_t>(bytes));
  }
  return out;
}

command_action add_bench_allreduce_command(CLI::App& bench) {
  auto* cmd = bench.add_subcommand(
      "allreduce", "f32 all-reduce time, algbw and busbw: troupe in process and across processes, "
                   "Gloo and OpenMPI (TCP) on the same sizes");
  auto f = std::make_shared<allreduce_flags>();
  cmd->add_option("--ranks", f->ranks, "ranks N")->check(CLI::Range(1, 64))->capture_default_str();
  cmd->add_option("--sizes", f->sizes, "buffer sizes in bytes, e.g. 4K,64K,1M,4M,64M")
      ->capture_default_str();
  cmd->add_flag(
      "--processes", f->processes_only,
      "only across N processes (and the peers); default: in process and across processes");
  cmd->add_flag("--in-process", f->in_process_only, "only in process");
  cmd->add_flag("--no-peers", f->no_peers, "do not run Gloo and OpenMPI");
  cmd->add_option("--algo", f->algo, "auto | ring | tree")
      ->check(CLI::IsMember({"auto", "ring", "tree"}))
      ->capture_default_str();
  cmd->add_option("--reps", f->reps, "timed repetitions per size (median reported)")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  cmd->add_option("--turns", f->turns,
                  "across processes: troupe, gloo and mpi take turns this many times (their "
                  "repetitions pooled), against drifting machine load")
      ->check(CLI::Range(1, 100))
      ->capture_default_str();
  cmd->add_option("--warmup", f->warmup, "untimed ops per size first")
      ->check(CLI::Range(0, 1000))
      ->capture_default_str();
  cmd->add_option("--threads", f->threads,
                  "CAF scheduler threads per actor system (default: cores in process, 1 per rank "
                  "process)")
      ->check(CLI::Range(0, 64));
  cmd->add_option("--segment-bytes", f->segment_bytes,
                  "pipelining segment of troupe's reducing collectives (0: whole blocks)")
      ->capture_default_str();
  cmd->add_option("--json", f->json, "also write every figure as JSON to FILE");

  auto* rank = bench.add_subcommand("allreduce-rank", "one rank process of `bench allreduce`");
  rank->group(""); // hidden: only `bench allreduce` starts it
  auto rf = std::make_shared<rank_flags>();
  rank->add_option("--rank", rf->rank)->required();
  rank->add_option("--ranks", rf->ranks)->required()->check(CLI::Range(1, 64));
  rank->add_option("--key-file", rf->key_file)->required();
  rank->add_option("--algo", rf->algo)->check(CLI::IsMember({"auto", "ring", "tree"}));
  rank->add_option("--threads", rf->threads)->check(CLI::Range(1, 64));
  rank->add_option("--segment-bytes", rf->segment_bytes);

  return [cmd, f, rank, rf] {
    if (cmd->parsed())
      return bench_allreduce(*f);
    if (rank->parsed()) {
      if (rf->rank < 0 || rf->rank >= rf->ranks)
        throw rt::input_error("--rank " + std::to_string(rf->rank) + " out of range");
      return run_rank(*rf);
    }
    return exit_bad_input;
  };
}

} // namespace troupe::apps
