// `troupe bench train --dp N`'s upper bound: N independent single-replica
// processes (this executable re-run with --solo-json), each pinned to its own
// core with the per-replica batch and no synchronisation. Their summed
// samples/s is what N replicas in one process could reach with a free
// runtime; issue 16 asks dp for >= 0.9x of it.

#include <sched.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <caf/actor_system.hpp>

#include "actors/protocol/system_config.hpp"
#include "apps/troupe/bench/bench_train_job.hpp"
#include "apps/troupe/bench/bench_util.hpp"
#include "apps/troupe/child_process.hpp"
#include "apps/troupe/commands.hpp"

namespace troupe::apps::train_bench {

namespace {

namespace fs = std::filesystem;

/// Pins this process to core `core` when the machine has it (else leaves it).
bool pin_to_core(int core) {
  if (core < 0 || core >= static_cast<int>(std::thread::hardware_concurrency()))
    return false;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(core, &set);
  return sched_setaffinity(0, sizeof(set), &set) == 0;
}

std::vector<std::string> solo_args(const bench_flags& f, std::int64_t batch, int core,
                                   const fs::path& out) {
  return {self_exe().string(),
          "bench",
          "train",
          "--model",
          f.model,
          "--batch",
          std::to_string(batch),
          "--threads",
          std::to_string(f.threads),
          "--optimizer",
          f.optimizer,
          "--lr",
          number(f.lr),
          "--steps",
          std::to_string(f.steps),
          "--warmup",
          std::to_string(f.warmup),
          "--seed",
          std::to_string(f.seed),
          "--data",
          f.data_dir,
          "--solo-core",
          std::to_string(core),
          "--solo-json",
          out.string()};
}

} // namespace

int bench_train_solo(const bench_flags& f) {
  const bool pinned = pin_to_core(f.solo_core);
  actors::system_config cfg;
  caf::actor_system sys{cfg};
  auto run = run_troupe(sys, f, 1, f.threads);
  write_json_file(f.solo_json,
                  {{"samples_per_second", static_cast<double>(f.batch) * run.steps_per_second},
                   {"step_ms", run.step_ms},
                   {"device_compute_ms", run.compute_ms},
                   {"core", pinned ? f.solo_core : -1}});
  return exit_ok;
}

solo_run run_independent(const bench_flags& f, int n, const fs::path& dir, int index) {
  const std::int64_t batch = f.batch / n;
  std::vector<std::unique_ptr<child_process>> kids;
  std::vector<fs::path> outs;
  for (int i = 0; i < n; ++i) {
    const auto stem = "solo-" + std::to_string(index) + "-" + std::to_string(i);
    outs.push_back(dir / (stem + ".json"));
    kids.push_back(std::make_unique<child_process>(solo_args(f, batch, i, outs.back()),
                                                   dir / (stem + ".log")));
  }
  solo_run r;
  for (int i = 0; i < n; ++i) {
    auto& k = *kids[static_cast<std::size_t>(i)];
    auto st =
        k.wait_for(std::chrono::milliseconds(static_cast<std::int64_t>(f.peer_timeout * 1e3)));
    if (!st) {
      k.stop(std::chrono::seconds(3));
      throw std::runtime_error("independent process " + std::to_string(i) + " timed out");
    }
    if (*st != 0)
      throw std::runtime_error("independent process " + std::to_string(i) + " exited with " +
                               std::to_string(*st) + ": " + last_line(k.log_tail()));
    std::ifstream in(outs[static_cast<std::size_t>(i)]);
    auto j = nlohmann::json::parse(in);
    r.samples_per_second += j.at("samples_per_second").get<double>();
    r.step_ms += j.at("step_ms").get<double>() / n;
    r.compute_ms += j.at("device_compute_ms").get<double>() / n;
    r.pinned += j.at("core").get<int>() >= 0 ? 1 : 0;
  }
  return r;
}

} // namespace troupe::apps::train_bench
