// `troupe bench ps`: the parameter servers, three ways.
//
// 1. push+pull ("pushpull"): W small worker actors, each with a ps_client
//    holding a model-sized parameter set (a zoo model's parameters, or with
//    --mb a synthetic set: one large dense layer that the assignment splits
//    across the shards and two smaller ones), against S ps_shard actors (sync
//    mode, plain SGD, so an update costs one pass over the parameters). A
//    round is: every worker pushes its gradients of step s, pulls the
//    parameters for s + 1 and writes them into its parameters; a worker starts
//    its next round when its pull is in. Payload per round = W x (pushed +
//    pulled bytes) = 2 W x model bytes; GB/s = payload per round / seconds per
//    round (the slowest worker's), and per shard / S. Measured
//      in process:   shards and workers in one actor system (tensors move by
//                    reference: only the packing, summing, updating and
//                    unpacking copies remain);
//      processes:    one process per shard and per worker (this executable
//                    re-run as the hidden `bench ps-rank`), each with its own
//                    actor system and courier over 127.0.0.1: pushes and
//                    pulls above 4 KiB travel over the data plane.
//    The machine's memcpy bandwidth (64 MiB, one thread) is measured in the
//    same run, so GB/s can be read against it.
// 2. ps modes ("modes"): training samples/s of the zoo mlp on MNIST through
//    actors::run_training (the code path of `troupe train`) with W workers
//    and --ps S shards in sync, async and ssp (--staleness K) mode, once with
//    every worker at full speed and once with worker --slow-replica's kernels
//    --slow-factor times slower; the ratio to sync, each run's largest
//    staleness (the shards' max_gap) and its mean training loss.
// 3. sync PS against all-reduce ("allreduce"): W workers with --compare-ps
//    shard counts (sync) against --dp W all-reduce data parallelism.
// Every part alternates its configurations (A B C A B C ..., the order
// rotated per repeat) over --repeats and reports medians, min and max.

#include "apps/troupe/bench/bench_ps.hpp"

#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <caf/all.hpp>
#include <nlohmann/json.hpp>

#include "apps/troupe/bench/bench_ps_options.hpp"
#include "apps/troupe/bench/bench_ps_params.hpp"
#include "apps/troupe/bench/bench_ps_parts.hpp"
#include "apps/troupe/bench/bench_ps_rank.hpp"
#include "apps/troupe/bench/bench_util.hpp"
#include "runtime/error.hpp"
#include "runtime/io/temp_dir.hpp"
#include "actors/protocol/system_config.hpp"

namespace troupe::apps {

namespace {

namespace fs = std::filesystem;
namespace rt = troupe::runtime;
using namespace ps_bench;

int bench_ps(ps_flags f) {
  if (f.in_process_only && f.processes_only)
    throw rt::input_error("--in-process and --processes exclude each other (neither: both)");
  const auto parts = parse_word_list("--parts", f.parts, {"pushpull", "modes", "allreduce"});
  if (f.threads == 0)
    f.threads = f.workers;
  if (f.batch < f.workers)
    throw rt::input_error("--batch " + std::to_string(f.batch) + " is smaller than --workers " +
                          std::to_string(f.workers) + ": a worker would get no samples");
  if (has(parts, "pushpull")) {
    parse_int_list("--shards", f.shards, 1, 64);
    parameter_model(f.model, f.mb); // a bad --model fails before anything runs
  }
  if (has(parts, "modes") || has(parts, "allreduce")) {
    parse_word_list("--modes", f.modes, {"sync", "async", "ssp"});
    if (has(parts, "modes") && f.slow_replica >= f.workers)
      throw rt::input_error("--slow-replica " + std::to_string(f.slow_replica) +
                            " is not a worker (--workers " + std::to_string(f.workers) + ")");
    parse_int_list("--compare-ps", f.compare_ps, 1, 256);
    if (!fs::exists(f.data_dir))
      throw rt::input_error("--data: no directory '" + f.data_dir + "'");
  }

  rt::temp_dir dir{"troupe-bench-ps-"};
  const auto load_before = load_average();
  const auto cores = std::thread::hardware_concurrency();
  std::printf("troupe bench ps: %d workers, %d repeat(s) interleaved, medians\n%u cores, load "
              "average %s\n",
              f.workers, f.repeats, cores, load_before.c_str());
  const double memcpy_bw = memcpy_gbps();
  std::printf("memcpy (64 MiB buffers, 1 thread): %.2f GB/s\n", memcpy_bw);
  std::fflush(stdout);

  troupe::actors::system_config cfg;
  caf::actor_system sys{cfg};
  nlohmann::json doc{{"benchmark", "ps"},
                     {"workers", f.workers},
                     {"repeats", f.repeats},
                     {"parts", parts},
                     {"memcpy_gbps", memcpy_bw},
                     {"cores", cores},
                     {"load_average_before", load_before}};
  if (has(parts, "pushpull"))
    doc["pushpull"] = bench_pushpull(f, sys, dir.path(), memcpy_bw);
  if (has(parts, "modes") || has(parts, "allreduce"))
    doc["training"] = bench_training(f, sys, parts);
  const auto load_after = load_average();
  doc["load_average_after"] = load_after;
  std::printf("load average after: %s%s\n", load_after.c_str(), busy_note(load_after, cores));
  if (!f.json.empty()) {
    write_json_file(f.json, doc);
    std::printf("wrote %s\n", f.json.c_str());
  }
  std::fflush(stdout);
  return exit_ok;
}

void add_ps_flags(CLI::App& cmd, ps_flags& f) {
  cmd.add_option("--parts", f.parts, "which parts to run: pushpull, modes, allreduce")
      ->capture_default_str();
  cmd.add_option("--workers", f.workers, "workers W (data-parallel replicas)")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  cmd.add_option("--repeats", f.repeats, "repeats, the configurations interleaved")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  cmd.add_option("--json", f.json, "also write every figure as JSON to FILE");
  cmd.add_option("--shards", f.shards, "push+pull: ps shard counts, e.g. 1,2,4")
      ->capture_default_str();
  cmd.add_option("--model", f.model, "push+pull: the zoo model whose parameters are pushed")
      ->check(CLI::IsMember({"mlp", "cnn", "transformer"}))
      ->capture_default_str();
  cmd.add_option("--mb", f.mb,
                 "push+pull: a synthetic parameter set of this many MiB (one large tensor that "
                 "is split across the shards, two smaller ones) instead of --model")
      ->check(CLI::Range(0.0, 1024.0));
  cmd.add_option("--split-mb", f.split_mb,
                 "push+pull: tensors above this many MiB are split across the shards")
      ->check(CLI::Range(1e-6, 1024.0))
      ->capture_default_str();
  cmd.add_option("--rounds", f.rounds, "push+pull: timed rounds per measurement")
      ->check(CLI::Range(1, 1000000))
      ->capture_default_str();
  cmd.add_option("--round-warmup", f.round_warmup, "push+pull: untimed rounds first")
      ->check(CLI::Range(0, 1000000))
      ->capture_default_str();
  cmd.add_flag("--in-process", f.in_process_only, "push+pull: only in process");
  cmd.add_flag("--processes", f.processes_only, "push+pull: only across processes (default: both)");
  cmd.add_option("--ps", f.ps, "modes: ps shards of the sync/async/ssp runs")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  cmd.add_option("--modes", f.modes, "modes: ps modes to run (sync is the ratios' base)")
      ->capture_default_str();
  cmd.add_option("--staleness", f.staleness, "modes: ssp's K")
      ->check(CLI::Range(0, 1000000))
      ->capture_default_str();
  cmd.add_option("--slow-replica", f.slow_replica, "modes: the worker slowed in the slow runs")
      ->check(CLI::Range(0, 63))
      ->capture_default_str();
  cmd.add_option("--slow-factor", f.slow_factor, "modes: how much slower its kernels run")
      ->check(CLI::Range(1.0, 100.0))
      ->capture_default_str();
  cmd.add_option("--compare-ps", f.compare_ps,
                 "allreduce: ps shard counts (sync) run against all-reduce")
      ->capture_default_str();
  cmd.add_option("--batch", f.batch, "training: global batch")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1} << 20))
      ->capture_default_str();
  cmd.add_option("--steps", f.steps, "training: timed steps per run")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{10000000}))
      ->capture_default_str();
  cmd.add_option("--warmup", f.warmup, "training: untimed steps before them")
      ->check(CLI::Range(std::int64_t{0}, std::int64_t{10000000}))
      ->capture_default_str();
  cmd.add_option("--lr", f.lr, "SGD learning rate (push+pull shards and training)")
      ->check(CLI::Range(1e-12, 100.0))
      ->capture_default_str();
  cmd.add_option("--threads", f.threads,
                 "training: compute threads in all (default: one per worker)")
      ->check(CLI::Range(1, 1024));
  cmd.add_option("--data", f.data_dir, "training: MNIST directory")->capture_default_str();
}

void add_rank_flags(CLI::App& rank, rank_flags& rf) {
  rank.add_option("--role", rf.role)->required()->check(CLI::IsMember({"shard", "worker"}));
  rank.add_option("--index", rf.index)->required()->check(CLI::Range(0, 63));
  rank.add_option("--shards", rf.shards)->required()->check(CLI::Range(1, 64));
  rank.add_option("--workers", rf.workers)->required()->check(CLI::Range(1, 64));
  rank.add_option("--key-file", rf.key_file)->required();
  rank.add_option("--model", rf.model);
  rank.add_option("--mb", rf.mb)->check(CLI::Range(0.0, 1024.0));
  rank.add_option("--split-mb", rf.split_mb)->check(CLI::Range(1e-6, 1024.0));
  rank.add_option("--lr", rf.lr);
}

} // namespace

command_action add_bench_ps_command(CLI::App& bench) {
  auto* cmd = bench.add_subcommand(
      "ps", "parameter servers: push+pull GB/s against shard count (in process and across "
            "processes), training samples/s of sync/async/ssp with a slow worker, and sync PS "
            "against all-reduce");
  auto f = std::make_shared<ps_flags>();
  add_ps_flags(*cmd, *f);

  auto* rank = bench.add_subcommand("ps-rank", "one shard or worker process of `bench ps`");
  rank->group(""); // hidden: only `bench ps` starts it
  auto rf = std::make_shared<rank_flags>();
  add_rank_flags(*rank, *rf);

  return [cmd, f, rank, rf] {
    if (cmd->parsed())
      return bench_ps(*f);
    if (rank->parsed()) {
      const int n = rf->role == "shard" ? rf->shards : rf->workers;
      if (rf->index >= n)
        throw rt::input_error("--index " + std::to_string(rf->index) + " out of range");
      return run_rank(*rf);
    }
    return exit_bad_input;
  };
}

} // namespace troupe::apps
