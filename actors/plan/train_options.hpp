#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "actors/plan/balance_mode.hpp"
#include "actors/plan/data_options.hpp"
#include "actors/plan/ps_mode.hpp"
#include "actors/plan/schedule.hpp"
#include "kernels/cpu/gemm_backend.hpp"

namespace troupe::actors {

/// Everything a user asks of a training job (the CLI's `train` flags, or JSON).
/// A value type: the supervisor turns it into a plan, the plan into actors.
struct train_options {
  std::string model = "mlp"; ///< zoo name, or the spec file model_spec came from
  /// A model of one's own (`--model FILE.json`: the client reads the file and
  /// sends this; nodes never read it): model_spec JSON, used instead of the
  /// zoo model `model` names. Null: `model` is a zoo name.
  nlohmann::json model_spec = nullptr;
  std::string data_dir = "data/mnist";
  int epochs = 1;
  std::int64_t batch = 64;        ///< the global batch, however it is split
  std::string optimizer = "adam"; ///< sgd | adam | adamw
  float lr = 1e-3f;
  float momentum = 0.f; ///< sgd only
  float weight_decay = 0.f;
  /// "constant" (lr after the warm-up) or "cosine" (after the warm-up a cosine
  /// decay to lr / 10 at the run's last step; models/train/lr_schedule.hpp). The
  /// trainer computes each step's rate and sends it in its step_msg.
  std::string lr_schedule = "constant";
  std::int64_t warmup_steps = 0; ///< linear warm-up to lr over this many steps (0: none)
  /// Gradient clipping by the global L2 norm over the whole model, summed
  /// across all stages (models/train/grad_clip.hpp); 0: off.
  double clip_norm = 0;
  std::uint64_t seed = 0;
  int stages = 1; ///< layer placement / pipeline depth
  int microbatches = 1;
  schedule_kind schedule = schedule_kind::gpipe;
  /// Model chunks per device (interleaved schedule, and 2 for zbv): the model
  /// is split into stages * virtual_stages parts, device d holding parts d,
  /// d + stages, ... (interleaved) or d and 2 * stages - 1 - d (zbv).
  int virtual_stages = 1;
  /// How the layers are cut into stages * virtual_stages chunks: "measured"
  /// (balanced by each layer's forward + backward time, measured when the job
  /// is planned, and by the devices' measured speed), "flops" (by counted
  /// forward FLOPs). Ignored when `split` is given.
  std::string partition = "flops";
  /// An explicit split: the number of layers of each chunk, in model order
  /// (stages * virtual_stages entries summing to the model's layers).
  std::vector<int> split;
  /// Data parallelism: this many replicas of the whole pipeline (each of
  /// `stages` stages), stage k of every replica all-reducing its gradients
  /// with stage k of the others after backward. 1: no data parallelism.
  int dp = 1;
  /// Each replica's share of the global batch as relative weights (one per
  /// replica, e.g. {3, 1}: replica 0 takes three quarters); empty: equal
  /// shares. The gradient average stays exact whatever the shares.
  std::vector<double> batch_shares;
  /// On a cluster: shares and stage boundaries from the devices' measured
  /// speed on this job's layers, rebalanced while the job runs (auto), or as
  /// given (off). Explicit batch_shares or split keep that part as given.
  balance_mode balance = balance_mode::automatic;
  /// Gradients are all-reduced in buckets of about this many bytes, each
  /// launched as soon as backward has produced it (0: one bucket per step,
  /// after backward).
  std::int64_t bucket_bytes = std::int64_t{25} << 20;
  /// All-reduce algorithm: "auto" (by size), "ring" or "tree".
  std::string allreduce = "auto";
  /// With "auto": buffers below this many bytes go through the tree.
  std::int64_t tree_threshold_bytes = std::int64_t{256} << 10;
  /// Check every this many steps that all replicas hold bitwise-identical
  /// parameters (a digest per stage per replica); the job fails naming the
  /// replica that diverged. 0: never.
  std::int64_t check_replicas = 0;
  /// Tensor (intra-layer, Megatron) parallelism: every pipeline stage of
  /// every replica is split across this many layer shards, each holding 1/tp
  /// of the split layers' weights (models/tensor_parallel.hpp). 1: none.
  int tp = 1;
  /// Parameter servers: this many ps shards hold the parameters and the
  /// optimizer state in place of the all-reduce between the dp replicas (the
  /// workers). 0: no parameter servers.
  int ps = 0;
  /// "sync" (a shard applies a step once every worker pushed it: equal to
  /// data parallelism), "async" (each push applied on arrival) or "ssp"
  /// (async, but no worker runs more than `staleness` steps ahead of the
  /// slowest).
  actors::ps_mode ps_mode = actors::ps_mode::sync;
  int staleness = 0;
  /// Parameters larger than this many bytes are split across all ps shards;
  /// smaller ones go whole to the least loaded shard.
  std::int64_t ps_split_bytes = std::int64_t{1} << 20;
  /// A saved plan (`troupe plan --save`) to run instead of planning; null:
  /// plan the job. Its degrees and model must match these options.
  nlohmann::json plan = nullptr;
  std::int64_t max_steps = -1; ///< stop after this many steps in all (-1: run the epochs)
  /// Evaluate after each epoch: test accuracy, or a language model's held-out
  /// loss and bits per character.
  bool evaluate = true;
  int threads = 0; ///< compute threads in all (0: one per core)
  /// --gemm: the library every device's GEMMs run on (kernels/cpu/gemm_backend.hpp).
  kernels::cpu::gemm_backend gemm = kernels::cpu::gemm_backend::automatic;
  /// Pin each CPU device's thread to cores of its own (a node's devices get
  /// consecutive cores, as many as their threads), where the node may.
  bool pin_cores = false;
  std::string checkpoint_dir; ///< write a checkpoint here at each epoch end and at the end
  std::string resume_dir;     ///< continue from this checkpoint
  bool progress = true;       ///< progress bar on stderr
  /// Write a Chrome trace-event timeline of the run here when it ends
  /// (runtime/telemetry/trace.hpp); empty: no tracing. On the supervisor's host.
  std::string trace_file;
  /// Replace a checkpoint already in checkpoint_dir (actors/cluster/checkpoint_target.hpp);
  /// without it a run onto another checkpoint than resume_dir's is refused.
  bool overwrite = false;
  /// Benchmarks: the first this many steps of the run are left out of the
  /// report's timed_* figures (warm-up: page faults, thread pools, caches).
  std::int64_t timing_warmup = 0;
  /// Fault injection for failure tests: "stage=S,step=N" makes stage S's
  /// forward of training step N throw. Empty: none.
  std::string fault;
  /// Benchmarks (`troupe bench pipeline`): stage `slow_stage` runs its
  /// forwards and backwards `slow_factor` times slower (it sleeps (factor - 1)
  /// x each one's compute time before sending the result), to show how an
  /// unbalanced pipeline's bubble moves. -1: no stage is slowed.
  int slow_stage = -1;
  double slow_factor = 1.0;
  /// With slow_stage: slow only that stage of this replica (a slow worker);
  /// -1: of every replica.
  int slow_replica = -1;

  // Recovery (actors/cluster/recovery.hpp): what a job does when one of its
  // actors or nodes is lost.
  /// Re-plans after failures before the job fails; 0: the first failure ends it.
  int max_restarts = 3;
  /// Elastic data parallelism: a recovered job may run on as few replicas as
  /// this (the global batch re-split over them), and grows back to `dp`.
  int min_dp = 1;
  /// When no plan fits the devices left, wait this many seconds for nodes to join.
  double rejoin_wait_s = 30;
  /// Every this many steps the state owners' parameters and optimizer state
  /// are copied (copy-on-write, without stopping) to the supervisor's process,
  /// the first place a recovery restores from. 0: never; -1: auto (every 50
  /// steps, widened when a snapshot costs more than 3% of the steps between).
  std::int64_t snapshot_every = -1;
  /// Write a checkpoint (into checkpoint_dir) every this many steps, without
  /// stopping training; 0: at epoch ends and at the end only.
  std::int64_t checkpoint_every = 0;
  /// The same every this many seconds; 0: off.
  double checkpoint_seconds = 0;
  /// A step that has not completed after this many seconds is a stall: the
  /// supervisor reports who waits for whom and recovers. 0: auto (10x the
  /// median step time, at least 5 s).
  double stall_timeout_s = 0;

  // Data (docs/data.md): what the job trains on besides data_dir, and how.
  /// A separate test file; empty: the data's own test split (IDX t10k),
  /// --holdout, or no evaluation.
  std::string test_data;
  /// Hold out this last fraction of the data file as the test set (0: none).
  double holdout = 0;
  std::string x_name = "x"; ///< .npz/.safetensors: the inputs array
  std::string y_name = "y"; ///< .npz/.safetensors: the targets array; CSV: the target column
  /// --normalize: "" (MNIST-style u8 IDX images x / 255, others as they are),
  /// "none", "auto", a divisor ("255") or "MEAN,STD" (parse_normalize).
  std::string normalize;
  loss_kind loss = loss_kind::automatic; ///< --loss
  /// --data-from: on a cluster, where the loaders read the data. Jobs of a
  /// single process, and run_training's own data sets, read in process.
  data_source data_from = data_source::nodes;

  // Evaluation (actors/training/evaluation.hpp).
  /// Also evaluate every this many training steps (0: at epoch ends and at
  /// the run's end only); each evaluation is an entry of the report's
  /// "evaluations".
  std::int64_t eval_every = 0;
  /// `troupe evaluate` / `predict`: no training; the trainer loads resume_dir's
  /// parameters, evaluates the test set once and reports.
  bool evaluate_only = false;
  /// With evaluate_only: the loss stage returns every test sample's outputs
  /// (logits), which job_result::predictions holds in test-set order.
  bool predict = false;

  /// Throws runtime::input_error naming the first invalid field.
  void validate() const;
  /// The optimizer config for models::make_optimizer.
  nlohmann::json optimizer_config() const;
};

/// What an injected fault does (tests of the failure paths and self-checks).
enum class fault_kind : std::uint8_t {
  fail,    ///< the layer shard's forward throws (the default)
  perturb, ///< the layer shard perturbs its parameters after the step's update
  hang,    ///< the layer shard stops answering anything from step N on (without dying)
  exit,    ///< the layer shard's actor exits at step N (an actor lost, its node alive)
  cut,     ///< the layer shard's node cuts its data-plane connections at step N
  probe,   ///< node `node`'s speed probe (--balance auto) answers `probe` (zero, absurd, hang)
};

/// A parsed fault-injection request.
struct fault_spec {
  fault_kind kind = fault_kind::fail;
  int stage = -1;
  std::int64_t step = -1;
  int replica = 0;
  int ps = -1;       ///< a ps shard that fails when it applies step `step`
  std::string node;  ///< fault_kind::probe: the node whose probe misbehaves
  std::string probe; ///< fault_kind::probe: "zero", "absurd" or "hang"
};
/// Parses "[perturb:|hang:|exit:|cut:]stage=S,step=N[,replica=R]", "ps=S,step=N" or
/// "probe:NODE=zero|absurd|hang"; empty text gives no fault. Throws runtime::input_error.
fault_spec parse_fault(const std::string& text);

nlohmann::json to_json(const train_options& o);
/// Parses and validates; unknown keys and ill-typed values are input errors.
train_options train_options_from_json(const nlohmann::json& j);

} // namespace troupe::actors
