#pragma once

// `troupe bench train`'s flags and the troupe side both of its comparisons
// share: one timed `troupe train` job, the initial weights every side starts
// from, and the GEMM rate of a device actor. Change here when the job changes.

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <caf/actor_system.hpp>
#include <nlohmann/json.hpp>

#include "actors/plan/time_breakdown.hpp"
#include "kernels/cpu/gemm_backend.hpp"
#include "models/step_gemms.hpp"

namespace troupe::apps::train_bench {

/// The PyTorch DDP peer (bench/peers/ddp_mlp.py), copied next to this
/// executable by bench/peers/CMakeLists.txt.
inline constexpr const char* ddp_peer_name = "troupe_peer_ddp.py";
inline constexpr const char* ddp_peer_source = "bench/peers/ddp_mlp.py";

/// Every flag of `bench train`; defaults as --help shows them.
struct bench_flags {
  std::string model = "mlp";
  std::int64_t batch = 0; ///< 0: 64, or 256 with --dp
  int threads = 1;        ///< with --dp: per replica (troupe) and per process (DDP)
  int dp = 1;             ///< > 1: the data-parallel comparison (bench_train_dp)
  double bucket_mb = 25;  ///< --dp: gradient bucket size, troupe and DDP alike
  std::string allreduce = "auto";
  std::string ddp_peer; ///< empty: next to this executable, else ddp_peer_source
  std::string python = "/usr/bin/python3";
  double peer_timeout = 300; ///< seconds one DDP run may take before it is killed
  std::string optimizer = "sgd";
  /// --gemm: troupe's GEMM library (the peers use theirs: libtorch OpenBLAS).
  kernels::cpu::gemm_backend gemm = kernels::cpu::gemm_backend::automatic;
  float lr = 0.f; ///< 0: the optimizer's usual default (sgd 0.01, adam 1e-3)
  std::int64_t steps = 200;
  std::int64_t warmup = 20;
  int repeats = 5;
  std::uint64_t seed = 0;
  std::string data_dir = "data/mnist";
  std::string json;
  std::string peer;
  std::string solo_json; ///< hidden: run one replica alone, figures into this file
  int solo_core = -1;
  bool pin_cores = true; ///< troupe's devices on cores of their own (--no-pin-cores: not)    ///<
                         ///< hidden, with solo_json: the core to pin to (-1: none)
};

/// The optimizer's usual learning rate (sgd 0.01, adam 1e-3): --lr's default.
float default_lr(const std::string& optimizer);

/// Writes the parameters troupe's layer shards start from (same spec, seed and
/// global names) so the peer starts from identical weights.
void write_initial_params(const std::string& model, std::uint64_t seed,
                          const std::filesystem::path& file);

/// sgemm GFLOP/s as a device actor with `threads` BLAS threads measures it.
double device_gemm_gflops(caf::actor_system& sys, int threads, kernels::cpu::gemm_backend gemm);

/// One troupe repeat's figures.
struct troupe_run {
  double steps_per_second = 0;
  double step_ms = 0;
  double compute_ms = 0; ///< device compute per step, as the stage reports
};

/// One `troupe train` job of the bench: `dp` replicas sharing `threads` in all;
/// with `trace_file`, traced into it (`troupe train --trace`).
troupe_run run_troupe(caf::actor_system& sys, const bench_flags& f, int dp, int threads,
                      const std::string& trace_file = {});

/// One traced single-replica run after the timed repeats: where its timed
/// steps' time went (actors::stage_breakdown of the one stage, the mean over
/// the timed steps), against its own measured step.
struct traced_run {
  troupe_run run;
  actors::time_breakdown breakdown;
};
traced_run run_traced(caf::actor_system& sys, const bench_flags& f,
                      const std::filesystem::path& trace_file);

/// The GEMM-bound limit of a step: its GEMMs (models::training_gemms of the
/// bench's model and batch) timed through troupe's kernels on a device actor
/// with the bench's thread count.
struct gemm_limit {
  models::step_gemms gemms;
  double pass_seconds = 0; ///< the step's GEMMs' summed median times: the minimum step
  int threads = 1;
  double gflops() const { return pass_seconds > 0 ? 1e-9 * gemms.flops() / pass_seconds : 0.0; }
};
/// A traced `dp`-replica run (threads in all) after the timed repeats:
/// where each replica's timed steps went (stage_breakdown of its one stage,
/// the mean over the timed steps), replica by replica.
struct traced_dp_run {
  troupe_run run;
  std::vector<actors::time_breakdown> replicas;
};
traced_dp_run run_traced_dp(caf::actor_system& sys, const bench_flags& f, int dp, int threads,
                            const std::filesystem::path& trace_file);

gemm_limit measure_gemm_limit(caf::actor_system& sys, const bench_flags& f);

/// The flags both reports carry: model, batch, optimizer, lr, seed, steps,
/// warmup, repeats.
nlohmann::json run_json(const bench_flags& f);

/// The child side of run_independent: one single-replica run (pinned to
/// f.solo_core where it exists), its figures written to f.solo_json.
int bench_train_solo(const bench_flags& f);

/// N independent single-replica processes' summed figures.
struct solo_run {
  double samples_per_second = 0;      ///< summed over the processes
  double step_ms = 0, compute_ms = 0; ///< means over the processes
  int pinned = 0;                     ///< processes that got their own core
};

/// Runs `n` copies of this executable at once, each one replica with batch
/// f.batch / n and f.threads threads pinned to core i, no synchronisation
/// (bench_train_solo.cpp); logs and reports in `dir`, named by `index`.
solo_run run_independent(const bench_flags& f, int n, const std::filesystem::path& dir, int index);

/// troupe --dp N against one replica and PyTorch DDP (bench_train_dp.cpp).
int bench_train_dp(bench_flags f);

} // namespace troupe::apps::train_bench
