#include "apps/troupe/train_flags.hpp"

#include <algorithm>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "actors/plan/plan.hpp"
#include "apps/troupe/data_flags.hpp"
#include "models/model_file.hpp"
#include "runtime/error.hpp"
#include "runtime/telemetry/trace.hpp"

namespace troupe::apps {

namespace {

/// The model, its data, the optimizer and the seed.
void add_model_flags(CLI::App* cmd, training_flags& f) {
  auto& o = f.opts;
  cmd->add_option("--model", o.model,
                  "zoo model: mlp | cnn (MNIST) | transformer (character language model), or a "
                  "model spec FILE.json (docs/models.md, e.g. data/models/keras_cnn.json)")
      ->capture_default_str();
  cmd->add_option("--data", o.data_dir,
                  "the training data (docs/data.md): a directory with IDX files (raw or .gz, e.g. "
                  "MNIST's), an .npz, .safetensors or .csv file, or a directory of shards; for "
                  "--model transformer a text file (e.g. data/sherlock.txt), its last 10% held "
                  "out for evaluation")
      ->capture_default_str();
  cmd->add_option("--epochs", o.epochs, "epochs to train")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  cmd->add_option("--batch", o.batch, "global batch size (split across micro-batches/replicas)")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  cmd->add_option("--optimizer", o.optimizer, "sgd | adam | adamw")
      ->check(CLI::IsMember({"sgd", "adam", "adamw"}))
      ->capture_default_str();
  cmd->add_option("--lr", o.lr, "learning rate")
      ->check(CLI::Range(1e-12, 100.0))
      ->capture_default_str();
  cmd->add_option("--momentum", o.momentum, "SGD momentum")
      ->check(CLI::Range(0.0, 0.999999))
      ->capture_default_str();
  cmd->add_option("--weight-decay", o.weight_decay,
                  "weight decay (L2 for sgd/adam, decoupled for adamw)")
      ->check(CLI::Range(0.0, 0.999999))
      ->capture_default_str();
  cmd->add_option("--lr-schedule", o.lr_schedule,
                  "constant | cosine (after the warm-up, cosine decay to lr/10 at the last step)")
      ->check(CLI::IsMember({"constant", "cosine"}))
      ->capture_default_str();
  cmd->add_option("--warmup-steps", o.warmup_steps,
                  "linear learning-rate warm-up over this many steps (fewer than the run's)")
      ->check(CLI::Range(std::int64_t{0}, std::int64_t{1} << 40))
      ->capture_default_str();
  cmd->add_option("--clip-norm", o.clip_norm,
                  "clip gradients to this global L2 norm over all stages (0: off)")
      ->check(CLI::Range(0.0, 1e30))
      ->capture_default_str();
  cmd->add_option("--seed", o.seed, "seed of initialisation, shuffling and dropout")
      ->capture_default_str();
}

/// Pipeline parallelism: depth, micro-batches, schedule and the layer split.
void add_pipeline_flags(CLI::App* cmd, training_flags& f) {
  auto& o = f.opts;
  cmd->add_option("--stages,--pp", o.stages,
                  "pipeline depth: split the model's layers over this many device actors")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  cmd->add_option("--microbatches", o.microbatches, "micro-batches per step")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  cmd->add_option("--schedule", f.schedule,
                  "pipeline schedule: gpipe | 1f1b | interleaved | zb1 (zero-bubble ZB-H1: "
                  "backward split into input and weight gradients, 1f1b's memory) | zbv "
                  "(zero-bubble ZB-V: two chunks per device in a V)")
      ->check(CLI::IsMember({"gpipe", "1f1b", "interleaved", "zb1", "zbv"}))
      ->capture_default_str();
  cmd->add_option("--virtual-stages", o.virtual_stages,
                  "model chunks per device for --schedule interleaved (Megatron's virtual "
                  "pipeline stages; the model is split into stages x this many parts); "
                  "zbv takes 2")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  cmd->add_option("--partition", o.partition,
                  "how layers are cut into stages: measured (each layer's forward+backward time, "
                  "measured at planning, and the devices' speed) | flops (counted FLOPs)")
      ->check(CLI::IsMember({"flops", "measured"}))
      ->capture_default_str();
  cmd->add_option("--split", o.split,
                  "explicit split: layers per stage (per chunk with --virtual-stages), e.g. 2,3")
      ->delimiter(',');
}

/// Data and tensor parallelism: replicas, their shares, the gradient all-reduce.
void add_replica_flags(CLI::App* cmd, training_flags& f) {
  auto& o = f.opts;
  cmd->add_option("--dp", o.dp,
                  "data parallelism: this many replicas of the model (of its pipeline with "
                  "--pp), each on its own devices, gradients all-reduced every step")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  cmd->add_option("--batch-shares", o.batch_shares,
                  "each replica's share of the global batch as weights, one per replica "
                  "(e.g. 3,1 for a device three times as fast; default: equal)")
      ->delimiter(',');
  cmd->add_option("--balance", f.balance,
                  "on a cluster: auto (the nodes measure this job's layers on their devices; "
                  "batch shares and stage boundaries follow their speed, rebalanced while the job "
                  "runs when one slows) | off (equal shares, --partition split); --batch-shares "
                  "or --split keep that part as given")
      ->check(CLI::IsMember({"auto", "off"}))
      ->capture_default_str();
  cmd->add_option("--bucket-mb", f.bucket_mb,
                  "all-reduce gradients in buckets of this many MiB, each launched as soon as "
                  "backward has produced it (0: one all-reduce after backward)")
      ->check(CLI::Range(0.0, 1e6))
      ->capture_default_str();
  cmd->add_option("--allreduce", o.allreduce,
                  "all-reduce algorithm: auto (tree below --tree-threshold bytes, ring above) | "
                  "ring | tree")
      ->check(CLI::IsMember({"auto", "ring", "tree"}))
      ->capture_default_str();
  cmd->add_option("--tree-threshold", o.tree_threshold_bytes,
                  "with --allreduce auto: buffers smaller than this many bytes use the tree")
      ->check(CLI::Range(std::int64_t{0}, std::int64_t{1} << 40))
      ->capture_default_str();
  cmd->add_option("--check-replicas", o.check_replicas,
                  "every N steps check that all replicas hold bitwise-identical parameters "
                  "(each replica then keeps its own parameter copy; 0: never)")
      ->check(CLI::Range(std::int64_t{0}, std::int64_t{1} << 40))
      ->capture_default_str();
  cmd->add_option("--tp", o.tp,
                  "tensor (intra-layer, Megatron) parallelism: split every stage's dense pairs, "
                  "attention heads and MLP blocks across this many layer shards")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
}

/// Parameter servers.
void add_ps_flags(CLI::App* cmd, training_flags& f) {
  auto& o = f.opts;
  cmd->add_option("--ps", o.ps,
                  "parameter servers: this many ps shards hold the parameters and optimizer "
                  "state; the --dp replicas (--workers) push gradients and pull parameters "
                  "instead of all-reducing (0: none)")
      ->check(CLI::Range(0, 256))
      ->capture_default_str();
  cmd->add_option("--workers", f.workers, "with --ps: the number of workers (the same as --dp)")
      ->check(CLI::Range(1, 1024));
  cmd->add_option("--ps-mode", f.ps_mode,
                  "sync (every step waits for all workers: equals data parallelism) | async "
                  "(each push applied on arrival) | ssp (async, at most --staleness steps ahead "
                  "of the slowest worker)")
      ->check(CLI::IsMember({"sync", "async", "ssp"}))
      ->capture_default_str();
  cmd->add_option("--staleness", o.staleness,
                  "with --ps-mode ssp: how many steps a worker may run ahead of the slowest")
      ->check(CLI::Range(0, 1000000))
      ->capture_default_str();
  cmd->add_option("--ps-split-mb", f.ps_split_mb,
                  "with --ps: parameters larger than this many MiB are split across all ps shards")
      ->check(CLI::Range(0.0, 1e6))
      ->capture_default_str();
}

/// What to run and keep: a saved plan, steps, threads, checkpoints, traces.
void add_run_flags(CLI::App* cmd, training_flags& f) {
  auto& o = f.opts;
  cmd->add_option("--plan", f.plan_file,
                  "run the topology saved in FILE (`troupe plan ... --save FILE`) instead of "
                  "planning one");
  cmd->add_option("--steps", o.max_steps,
                  "stop after this many steps in all (default: run the epochs)")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1} << 40));
  cmd->add_option("--threads", o.threads, "compute threads in all (default: one per core)")
      ->check(CLI::Range(1, 1024));
  cmd->add_option_function<std::string>(
         "--gemm", [&o](const std::string& s) { o.gemm = kernels::cpu::parse_gemm_backend(s); },
         "the GEMM library of every CPU device: auto (oneDNN on a device with 1 thread, "
         "OpenBLAS with more) | openblas | onednn (docs/benchmarks.md compares them)")
      ->check(CLI::IsMember({"auto", "openblas", "onednn"}));
  cmd->add_flag("--pin-cores", o.pin_cores,
                "pin each CPU device to cores of its own (a node's devices get consecutive "
                "cores; not for several nodes on one machine)");
  cmd->add_option("--checkpoint", o.checkpoint_dir,
                  "write a checkpoint into DIR at each epoch end and at the end");
  cmd->add_option("--resume", o.resume_dir, "continue from the checkpoint in DIR");
  cmd->add_option("--trace", o.trace_file,
                  "write a timeline of the run to FILE (Chrome trace-event JSON: open it in "
                  "ui.perfetto.dev or chrome://tracing): a track per stage (forward, backward, "
                  "optimizer, input arrivals, waits) and one for the trainer. Each track keeps "
                  "its first " +
                      std::to_string(runtime::default_trace_capacity) +
                      " events; later ones are only counted (metadata.dropped_events). Written "
                      "by the supervisor's process when the run ends");
  cmd->add_flag("--no-eval", f.no_eval, "skip the test-set evaluation");
  cmd->add_option("--eval-every", o.eval_every,
                  "also evaluate on the test set every N training steps (the report's "
                  "\"evaluations\" lists each; 0: at epoch ends and the run's end only)")
      ->check(CLI::Range(std::int64_t{0}, std::int64_t{1} << 40));
}

/// Recovery: restarts, elastic data parallelism, snapshots, periodic
/// checkpoints, stall detection (actors/cluster/recovery.hpp).
void add_recovery_flags(CLI::App* cmd, training_flags& f) {
  auto& o = f.opts;
  const char* group = "Recovery";
  cmd->add_option("--max-restarts", o.max_restarts,
                  "when an actor or node of the job is lost, re-plan on the devices left (and "
                  "any spare node) and continue, at most this many times (0: fail at once)")
      ->check(CLI::Range(0, 1000))
      ->capture_default_str()
      ->group(group);
  cmd->add_option("--min-dp", o.min_dp,
                  "elastic data parallelism: after a loss keep running on as few as this many "
                  "replicas (the global batch re-split), growing back to --dp when nodes join")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str()
      ->group(group);
  cmd->add_option("--rejoin-wait", o.rejoin_wait_s,
                  "seconds a recovering job waits for nodes to join when no plan fits the "
                  "devices left")
      ->check(CLI::Range(0.0, 86400.0))
      ->capture_default_str()
      ->group(group);
  cmd->add_option("--snapshot-every", o.snapshot_every,
                  "copy the parameters and optimizer state to the supervisor's process every N "
                  "steps, without stopping (0: never; -1: auto, every 50 steps widened to keep "
                  "the cost under 3%)")
      ->check(CLI::Range(std::int64_t{-1}, std::int64_t{1} << 40))
      ->capture_default_str()
      ->group(group);
  cmd->add_option("--checkpoint-every", o.checkpoint_every,
                  "with --checkpoint: also write a checkpoint every N steps, without stopping "
                  "training (0: at epoch ends only)")
      ->check(CLI::Range(std::int64_t{0}, std::int64_t{1} << 40))
      ->group(group);
  cmd->add_option("--checkpoint-seconds", o.checkpoint_seconds,
                  "with --checkpoint: also write a checkpoint every T seconds")
      ->check(CLI::Range(0.0, 1e9))
      ->group(group);
  cmd->add_option("--stall-timeout", o.stall_timeout_s,
                  "a step not done after this many seconds is a stall: report who waits for "
                  "whom, then recover (0: auto, 10x the median step time, at least 5 s)")
      ->check(CLI::Range(0.0, 1e6))
      ->capture_default_str()
      ->group(group);
}

/// Testing and benchmarks: fault injection and slowed stages.
void add_testing_flags(CLI::App* cmd, training_flags& f) {
  auto& o = f.opts;
  cmd->add_option(
         "--inject-fault", o.fault,
         "testing: make stage S (of replica R) fail in training step N "
         "(stage=S,step=N[,replica=R]), exit or hang there (exit:... / hang:...), cut its node's "
         "data-plane connections (cut:...), or "
         "perturb its parameters after step N's "
         "update (perturb:stage=S,step=N[,replica=R]; --check-replicas must catch "
         "it), or parameter-server shard S fail when it applies step N (ps=S,step=N)")
      ->group("Testing");
  cmd->add_option("--slow-stage", o.slow_stage,
                  "benchmarks: make stage S's forwards and backwards --slow-factor times slower "
                  "(-1: none)")
      ->group("Testing");
  cmd->add_option("--slow-factor", o.slow_factor, "how much slower --slow-stage runs")
      ->group("Testing");
  cmd->add_option("--slow-replica", o.slow_replica,
                  "with --slow-stage: slow only this replica's (worker's) stage (-1: all)")
      ->group("Testing");
}

} // namespace

void add_training_flags(CLI::App* cmd, training_flags& f) {
  add_model_flags(cmd, f);
  add_data_flags(cmd, f.opts);
  add_pipeline_flags(cmd, f);
  add_replica_flags(cmd, f);
  add_ps_flags(cmd, f);
  add_run_flags(cmd, f);
  add_recovery_flags(cmd, f);
  add_testing_flags(cmd, f);
  cmd->add_flag("--no-progress", f.no_progress, "no progress output");
}

namespace {

nlohmann::json read_plan_file(const std::string& file) {
  std::ifstream in{file};
  if (!in)
    throw runtime::input_error("--plan " + file + ": cannot open");
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw runtime::input_error("--plan " + file + ": not JSON: " + e.what());
  }
}

} // namespace

void finish_training_flags(training_flags& f) {
  f.opts.schedule = actors::parse_schedule_kind(f.schedule);
  if (f.opts.schedule == actors::schedule_kind::zbv && f.opts.virtual_stages == 1)
    f.opts.virtual_stages = 2; // zbv's V: two chunks per device
  f.opts.ps_mode = actors::parse_ps_mode(f.ps_mode);
  f.opts.balance = actors::parse_balance_mode(f.balance);
  f.opts.evaluate = !f.no_eval;
  f.opts.progress = !f.no_progress;
  f.opts.bucket_bytes = static_cast<std::int64_t>(f.bucket_mb * 1024.0 * 1024.0);
  f.opts.ps_split_bytes =
      std::max<std::int64_t>(4, static_cast<std::int64_t>(f.ps_split_mb * 1024.0 * 1024.0));
  if (f.workers > 0) {
    if (f.opts.ps == 0)
      throw runtime::input_error("--workers needs --ps S (without parameter servers use --dp)");
    if (f.opts.dp != 1 && f.opts.dp != f.workers)
      throw runtime::input_error("--workers " + std::to_string(f.workers) + " and --dp " +
                                 std::to_string(f.opts.dp) + " disagree (they are the same)");
    f.opts.dp = f.workers;
  }
  if (!f.plan_file.empty()) {
    f.opts.plan = read_plan_file(f.plan_file);
    // Checked here too (the supervisor checks it again), so that the error names the file.
    try {
      (void)actors::plan_from_json(f.opts.plan);
    } catch (const runtime::input_error& e) {
      throw runtime::input_error("--plan " + f.plan_file + ": " + e.what());
    }
  }
  if (models::is_model_file(f.opts.model)) // read here: a cluster's nodes never see the file
    f.opts.model_spec = models::read_model_file(f.opts.model).to_json();
  f.opts.validate();
}

} // namespace troupe::apps
