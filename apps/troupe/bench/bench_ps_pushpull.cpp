// Part 1 of `bench ps`, push+pull: the in-process measurement, the repeats
// over every configuration and the table (processes: bench_ps_rank.cpp).

#include "apps/troupe/bench/bench_ps_parts.hpp"

#include <cstdio>
#include <string>
#include <vector>

#include "actors/ps/ps_shard.hpp"
#include "apps/troupe/bench/bench_ps_params.hpp"
#include "apps/troupe/bench/bench_ps_rank.hpp"
#include "apps/troupe/bench/bench_ps_worker.hpp"
#include "apps/troupe/bench/bench_util.hpp"

namespace troupe::apps::ps_bench {

namespace fs = std::filesystem;
namespace rt = troupe::runtime;
namespace {

/// S shard actors and W worker actors in this actor system; one measurement.
pushpull_run pushpull_in_process(caf::actor_system& sys, const ps_flags& f,
                                 const models::model_spec& spec, int s) {
  auto a = make_assignment(spec, s, f.split_mb);
  std::vector<caf::actor> shards, workers;
  for (int i = 0; i < s; ++i)
    shards.push_back(actors::spawn_ps_shard(sys, shard_config(spec, a, i, f.workers, f.lr, {})));
  auto params = worker_parameters(spec);
  for (int w = 0; w < f.workers; ++w)
    workers.push_back(
        sys.spawn(worker, w, a, shards, std::shared_ptr<rt::transport::courier>{}, params, f.lr));
  auto stop_all = [&] {
    for (auto& x : workers)
      caf::anon_send_exit(x, caf::exit_reason::user_shutdown);
    for (auto& x : shards)
      caf::anon_send_exit(x, caf::exit_reason::user_shutdown);
  };
  pushpull_run r;
  try {
    if (f.round_warmup > 0)
      run_workers(sys, workers, f.round_warmup);
    auto before = shard_stats(sys, shards);
    r.round_seconds = run_workers(sys, workers, f.rounds) / f.rounds;
    r.shards = shard_stats(sys, shards) - before;
  } catch (...) {
    stop_all();
    throw;
  }
  stop_all();
  return r;
}

struct pushpull_config {
  std::string where; ///< "in process" or "processes"
  int shards = 1;
  std::vector<double> round_seconds, gbps, apply_ms_per_round;
  nlohmann::json runs = nlohmann::json::array();
};

/// Prints the medians of every configuration; returns them as JSON rows.
nlohmann::json print_table(const std::vector<pushpull_config>& cfgs, double memcpy_bw) {
  std::printf("\n%-10s %6s %22s %22s %10s %8s %14s\n", "where", "shards", "ms/round (min-max)",
              "GB/s (min-max)", "GB/s/shard", "/memcpy", "update ms/rnd");
  nlohmann::json rows = nlohmann::json::array();
  for (const auto& c : cfgs) {
    auto t = summary::of(c.round_seconds);
    auto g = summary::of(c.gbps);
    auto u = summary::of(c.apply_ms_per_round);
    char ms[48], gb[48];
    std::snprintf(ms, sizeof ms, "%.3f (%.3f-%.3f)", 1e3 * t.median, 1e3 * t.min, 1e3 * t.max);
    std::snprintf(gb, sizeof gb, "%.3f (%.3f-%.3f)", g.median, g.min, g.max);
    std::printf("%-10s %6d %22s %22s %10.3f %7.1f%% %14.3f\n", c.where.c_str(), c.shards, ms, gb,
                g.median / c.shards, memcpy_bw > 0 ? 100.0 * g.median / memcpy_bw : 0.0, u.median);
    rows.push_back(
        {{"where", c.where},
         {"shards", c.shards},
         {"round_ms", {{"median", 1e3 * t.median}, {"min", 1e3 * t.min}, {"max", 1e3 * t.max}}},
         {"gbps", g.to_json()},
         {"gbps_per_shard", g.median / c.shards},
         {"over_memcpy", memcpy_bw > 0 ? g.median / memcpy_bw : 0.0},
         {"shard_update_ms_per_round", u.to_json()},
         {"runs", c.runs}});
  }
  std::printf("GB/s = push + pull payload of all workers per round / the slowest worker's "
              "seconds per round; /memcpy: against the one-thread memcpy above; update: the "
              "shards' summing + SGD time per round, all shards together\n");
  return rows;
}

} // namespace

nlohmann::json bench_pushpull(const ps_flags& f, caf::actor_system& sys, const fs::path& dir,
                              double memcpy_bw) {
  const auto spec = parameter_model(f.model, f.mb);
  const auto shard_counts = parse_int_list("--shards", f.shards, 1, 64);
  const auto bytes = model_bytes(make_assignment(spec, 1, f.split_mb));
  std::int64_t params = 0;
  for (const auto& p : make_assignment(spec, 1, f.split_mb).params)
    params += p.numel;
  const double payload = 2.0 * f.workers * static_cast<double>(bytes); // per round

  std::vector<pushpull_config> cfgs;
  for (bool processes : {false, true}) {
    if ((processes && f.in_process_only) || (!processes && f.processes_only))
      continue;
    for (int s : shard_counts) {
      auto& c = cfgs.emplace_back();
      c.where = processes ? "processes" : "in process";
      c.shards = s;
    }
  }
  std::printf("\n1. push+pull: %d workers, %s parameters (%lld, %.2f MiB, tensors above %g MiB "
              "split across the shards), sync SGD, %d rounds after %d warm-up, payload per "
              "round %.2f MB (push + pull, all workers)\n",
              f.workers, spec.name.c_str(), static_cast<long long>(params),
              static_cast<double>(bytes) / 1048576.0, f.split_mb, f.rounds, f.round_warmup,
              payload / 1e6);
  std::fflush(stdout);
  for (int r = 0; r < f.repeats; ++r) {
    for (std::size_t k = 0; k < cfgs.size(); ++k) {
      auto& c = cfgs[(k + static_cast<std::size_t>(r)) % cfgs.size()];
      auto run = c.where == "processes"
                     ? pushpull_processes(f, c.shards, dir, r * 100 + static_cast<int>(k))
                     : pushpull_in_process(sys, f, spec, c.shards);
      const double gbps = payload / run.round_seconds / 1e9;
      c.round_seconds.push_back(run.round_seconds);
      c.gbps.push_back(gbps);
      c.apply_ms_per_round.push_back(1e3 * run.shards.apply_seconds / f.rounds);
      c.runs.push_back({{"round_ms", 1e3 * run.round_seconds},
                        {"gbps", gbps},
                        {"shard_bytes_in_per_round", run.shards.bytes_in / f.rounds},
                        {"shard_bytes_out_per_round", run.shards.bytes_out / f.rounds},
                        {"shard_update_ms_per_round", c.apply_ms_per_round.back()}});
      std::printf("  repeat %d  %-10s S=%d  %8.3f ms/round  %7.3f GB/s\n", r + 1, c.where.c_str(),
                  c.shards, 1e3 * run.round_seconds, gbps);
      std::fflush(stdout);
    }
  }
  auto rows = print_table(cfgs, memcpy_bw);
  return {{"workers", f.workers},
          {"parameters", spec.name},
          {"parameter_count", params},
          {"parameter_bytes", bytes},
          {"split_bytes", static_cast<std::int64_t>(f.split_mb * 1048576.0)},
          {"payload_bytes_per_round", payload},
          {"rounds", f.rounds},
          {"round_warmup", f.round_warmup},
          {"mode", "sync"},
          {"optimizer", "sgd"},
          {"rows", rows}};
}

} // namespace troupe::apps::ps_bench
