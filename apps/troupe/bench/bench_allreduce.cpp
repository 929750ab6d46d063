// `troupe bench allreduce`: f32 all-reduce of each size in --sizes over
// --ranks N ranks:
//   in process:   N collective rank actors in one actor system (no courier);
//   processes:    N rank processes (this executable re-run as the hidden
//                 `bench allreduce-rank`), each with its own actor system and
//                 courier, connected as a collective_mesh over 127.0.0.1 (CAF
//                 for control and blocks <= 4 KiB, the data plane above);
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

#include <cctype>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "actors/plan/collective_algorithms.hpp"
#include "apps/troupe/bench/bench_allreduce_runs.hpp"
#include "apps/troupe/bench/bench_util.hpp"
#include "runtime/error.hpp"
#include "runtime/io/temp_dir.hpp"
#include "runtime/telemetry/wake_probe.hpp"

namespace troupe::apps {

namespace {

namespace fs = std::filesystem;
namespace rt = troupe::runtime;
namespace coll = troupe::actors::collectives;
using namespace allreduce_bench;

constexpr const char* gloo_peer = "troupe_peer_gloo";
constexpr const char* mpi_peer = "troupe_peer_mpi";
constexpr const char* peer_missing = "peer not built: scripts/bootstrap --peers";

nlohmann::json timing_json(const summary& t, std::size_t bytes, int n) {
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

/// The peers of this run (built next to this executable, mpirun on PATH)
/// and, for each one missing or failed, why.
struct peer_set {
  std::optional<fs::path> gloo, mpi, mpirun;
  std::string gloo_note, mpi_note;
};

peer_set find_peers(const allreduce_flags& f, bool processes) {
  peer_set p;
  if (!processes || f.no_peers)
    return p;
  if (auto g = next_to_self(gloo_peer); is_executable(g))
    p.gloo = g;
  else
    p.gloo_note = std::string{"gloo "} + peer_missing;
  p.mpirun = find_on_path("mpirun");
  if (auto m = next_to_self(mpi_peer); is_executable(m) && p.mpirun)
    p.mpi = m;
  else
    p.mpi_note = std::string{"mpi "} + peer_missing + (p.mpirun ? "" : " (no mpirun on PATH)");
  return p;
}

/// Across processes, per size: troupe's, gloo's and mpi's seconds per op
/// (gloo and mpi empty when not run) and troupe's bytes sent per rank per op.
struct process_figures {
  std::vector<summary> ours, gloo, mpi;
  std::vector<double> sent;
};

/// Troupe, gloo and mpi take turns, `turns` times, so that a change of
/// machine load hits all three; each one's repetitions are pooled (median
/// over all of them). A peer that fails is dropped with a note.
process_figures run_turns(const allreduce_flags& f, const std::vector<std::size_t>& sizes,
                          peer_set& peers, const fs::path& dir) {
  std::vector<std::vector<double>> ours_all(sizes.size()), gloo_all(sizes.size()),
      mpi_all(sizes.size());
  process_figures out;
  out.sent.assign(sizes.size(), 0.0);
  bool run_gloo = peers.gloo.has_value() && f.ranks > 1, run_mpi = peers.mpi.has_value();
  if (peers.gloo && f.ranks == 1)
    peers.gloo_note = "gloo: not run for 1 rank";
  auto pool = [](std::vector<std::vector<double>>& into, std::vector<std::vector<double>> rows) {
    for (std::size_t i = 0; i < rows.size() && i < into.size(); ++i)
      into[i].insert(into[i].end(), rows[i].begin(), rows[i].end());
  };
  for (int turn = 0; turn < f.turns; ++turn) {
    if (f.turns > 1)
      std::printf("turn %d of %d\n", turn + 1, f.turns);
    auto ours = bench_processes(f, sizes, dir);
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      ours_all[i].insert(ours_all[i].end(), ours[i].per_op.begin(), ours[i].per_op.end());
      out.sent[i] = ours[i].bytes_sent_per_rank;
    }
    if (run_gloo) {
      try {
        pool(gloo_all, bench_gloo(f, sizes, *peers.gloo, dir, turn));
      } catch (const std::exception& e) {
        peers.gloo_note = std::string{"gloo peer failed: "} + e.what();
        run_gloo = false;
      }
    }
    if (run_mpi) {
      try {
        pool(mpi_all, bench_mpi(f, sizes, *peers.mpirun, *peers.mpi, dir));
      } catch (const std::exception& e) {
        peers.mpi_note = std::string{"mpi peer failed: "} + e.what();
        run_mpi = false;
      }
    }
  }
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    out.ours.push_back(summary::of(ours_all[i]));
    if (run_gloo)
      out.gloo.push_back(summary::of(gloo_all[i]));
    if (run_mpi)
      out.mpi.push_back(summary::of(mpi_all[i]));
  }
  return out;
}

/// What the tables and the JSON report share: the run's sizes and algorithm.
struct report_context {
  const allreduce_flags& f;
  const std::vector<std::size_t>& sizes;
  coll::allreduce_algo algo;
  double memcpy_bw = 0;

  std::string algo_of(std::size_t bytes) const {
    return coll::to_string(
        coll::choose_allreduce(bytes, f.ranks, coll::default_tree_threshold_bytes, algo));
  }
  static double bw(std::size_t bytes, const summary& t) {
    return t.median > 0 ? static_cast<double>(bytes) / t.median / 1e9 : 0.0;
  }
};

void print_in_process(const report_context& c, const std::vector<summary>& ours_in) {
  const double bf = bus_factor(c.f.ranks);
  std::printf("\nin process: %d rank actors, one actor system\n", c.f.ranks);
  std::printf("%8s %5s %6s %10s %10s %10s %14s\n", "size", "algo", "iters", "time ms", "algbw GB/s",
              "busbw GB/s", "busbw/memcpy");
  for (std::size_t i = 0; i < c.sizes.size(); ++i) {
    double a = c.bw(c.sizes[i], ours_in[i]);
    std::printf("%8s %5s %6d %10.3f %10.3f %10.3f %13.1f%%\n", human_bytes(c.sizes[i]).c_str(),
                c.algo_of(c.sizes[i]).c_str(), iterations_for(c.sizes[i]), ours_in[i].median * 1e3,
                a, a * bf, c.memcpy_bw > 0 ? 100.0 * a * bf / c.memcpy_bw : 0.0);
  }
}

void print_processes(const report_context& c, const process_figures& p, const peer_set& peers) {
  const int n = c.f.ranks;
  const double bf = bus_factor(n);
  const auto& sizes = c.sizes;
  std::printf("\nacross %d processes on 127.0.0.1 (troupe: courier, data plane above 4 KiB; "
              "gloo: tcp; mpi: ob1 + tcp,self on lo)\n",
              n);
  std::printf("%8s %5s %10s %10s %10s %10s %10s %10s %11s %10s\n", "size", "algo", "troupe ms",
              "busbw GB/s", "gloo ms", "busbw GB/s", "mpi ms", "busbw GB/s", "troupe/gloo",
              "troupe/mpi");
  auto cell = [](const std::vector<summary>& rows, std::size_t i, double x) {
    char buf[32];
    if (i >= rows.size())
      return std::string{"-"};
    std::snprintf(buf, sizeof buf, "%.3f", x);
    return std::string{buf};
  };
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    const auto& t = p.ours[i];
    double g = i < p.gloo.size() ? p.gloo[i].median : 0;
    double m = i < p.mpi.size() ? p.mpi[i].median : 0;
    std::printf("%8s %5s %10.3f %10.3f %10s %10s %10s %10s %11s %10s\n",
                human_bytes(sizes[i]).c_str(), c.algo_of(sizes[i]).c_str(), t.median * 1e3,
                c.bw(sizes[i], t) * bf, cell(p.gloo, i, g * 1e3).c_str(),
                cell(p.gloo, i, g > 0 ? sizes[i] / g / 1e9 * bf : 0).c_str(),
                cell(p.mpi, i, m * 1e3).c_str(),
                cell(p.mpi, i, m > 0 ? sizes[i] / m / 1e9 * bf : 0).c_str(),
                cell(p.gloo, i, t.median > 0 ? g / t.median : 0).c_str(),
                cell(p.mpi, i, t.median > 0 ? m / t.median : 0).c_str());
  }
  std::printf("troupe/peer = peer time / troupe time (> 1: troupe faster)\n");
  for (const auto& note : {peers.gloo_note, peers.mpi_note})
    if (!note.empty())
      std::printf("note: %s\n", note.c_str());
  if (peers.mpi)
    std::printf("mpi: %s --sizes ...\n",
                join(mpirun_command(*peers.mpirun, *peers.mpi, n)).c_str());
}

/// The JSON rows, one per size (a side not measured is left out or null).
nlohmann::json report_rows(const report_context& c, const std::vector<summary>& ours_in,
                           const std::optional<process_figures>& p) {
  const int n = c.f.ranks;
  nlohmann::json rows = nlohmann::json::array();
  for (std::size_t i = 0; i < c.sizes.size(); ++i) {
    const auto bytes = c.sizes[i];
    nlohmann::json row{{"size_bytes", bytes},
                       {"ranks", n},
                       {"algo", c.algo_of(bytes)},
                       {"iterations", iterations_for(bytes)}};
    if (!ours_in.empty()) {
      auto j = timing_json(ours_in[i], bytes, n);
      j["busbw_over_memcpy"] = c.memcpy_bw > 0 ? j["busbw_gbps"].get<double>() / c.memcpy_bw : 0.0;
      row["in_process"] = j;
    }
    if (p) {
      auto j = timing_json(p->ours[i], bytes, n);
      j["bytes_sent_per_rank_per_op"] = p->sent[i];
      row["processes"] = j;
      const auto& t = p->ours[i];
      const bool g = i < p->gloo.size(), m = i < p->mpi.size();
      row["gloo"] = g ? timing_json(p->gloo[i], bytes, n) : nlohmann::json();
      row["mpi"] = m ? timing_json(p->mpi[i], bytes, n) : nlohmann::json();
      row["troupe_over_gloo"] =
          g && t.median > 0 ? nlohmann::json(p->gloo[i].median / t.median) : nlohmann::json();
      row["troupe_over_mpi"] =
          m && t.median > 0 ? nlohmann::json(p->mpi[i].median / t.median) : nlohmann::json();
    }
    rows.push_back(row);
  }
  return rows;
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
  auto peers = find_peers(f, processes);

  const auto load_before = load_average();
  const auto cores = std::thread::hardware_concurrency();
  std::printf(
      "troupe bench allreduce: f32 sum over %d rank(s), algo %s (tree below %zu bytes "
      "when auto), %d warm-up op(s), median of %d repetition(s)\n%u cores, load average %s\n",
      n, f.algo.c_str(), coll::default_tree_threshold_bytes, f.warmup, f.reps, cores,
      load_before.c_str());
  std::fflush(stdout);
  const report_context ctx{f, sizes, algo, memcpy_gbps()};
  std::printf("memcpy (64 MiB buffers, 1 thread): %.2f GB/s\n", ctx.memcpy_bw);
  std::fflush(stdout);

  std::vector<summary> ours_in;
  if (in_process)
    ours_in = bench_in_process(f, sizes, algo);
  std::optional<process_figures> across;
  if (processes)
    across = run_turns(f, sizes, peers, dir.path());

  if (in_process)
    print_in_process(ctx, ours_in);
  if (across)
    print_processes(ctx, *across, peers);
  const auto load_after = load_average();
  const auto wake = rt::measure_wake_latency();
  std::printf("%s: each hop of a small all-reduce pays two (data plane io thread -> rank "
              "actor, and back); MPI's ranks busy-poll\n",
              rt::to_text(wake).c_str());
  std::printf("load average after: %s%s; env OPENBLAS_CORETYPE=%s\n", load_after.c_str(),
              busy_note(load_after, cores), env_or_unset("OPENBLAS_CORETYPE").c_str());

  if (!f.json.empty()) {
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
        {"memcpy_gbps", ctx.memcpy_bw},
        {"cores", cores},
        {"load_average_before", load_before},
        {"load_average_after", load_after},
        {"wake_latency", rt::to_json(wake)},
        {"gloo_note", peers.gloo_note},
        {"mpi_note", peers.mpi_note},
        {"mpi_command", peers.mpi
                            ? nlohmann::json(join(mpirun_command(*peers.mpirun, *peers.mpi, n)))
                            : nlohmann::json()},
        {"rows", report_rows(ctx, ours_in, across)}};
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
