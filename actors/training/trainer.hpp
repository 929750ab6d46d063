#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/allowed_unsafe_message_type.hpp>
#include <nlohmann/json.hpp>

#include "actors/plan/plan.hpp"
#include "actors/plan/rebalancer.hpp"
#include "actors/plan/train_options.hpp"
#include "runtime/io/checkpoint.hpp"

namespace troupe::runtime::transport {
class courier;
}

namespace troupe::actors {

/// What a trainer drives.
struct trainer_config {
  train_options opts;
  plan topology;
  /// Layer shards in topology.stages order: replica-major, each replica's in
  /// pipeline order.
  std::vector<caf::actor> stages;
  /// Parameter-server shards (topology.ps_shards order); empty without.
  std::vector<caf::actor> ps_shards;
  std::vector<caf::actor> train_loaders; ///< one per replica, each loading its share
  caf::actor test_loader;                ///< may be null when !opts.evaluate
  std::int64_t train_samples = 0;
  std::int64_t test_samples = 0;
  std::int64_t test_batch = 1000;
  /// How the loaders normalise inputs (input_transform::description), for
  /// reports and checkpoint manifests; null: runtime::input_normalization().
  nlohmann::json input_normalization = nullptr;
  std::optional<runtime::checkpoint> resume;
  caf::actor report_to; ///< gets progress and (job_done_atom, report, parameters)
  /// How inputs reach the first stage when it lives in another process; null
  /// in a single-process job.
  std::shared_ptr<runtime::transport::courier> courier;
  /// Set by the in-process caller (Ctrl-C on `troupe train`): the trainer
  /// stops at the next step boundary as if the run ended there (its final
  /// checkpoint and report, "interrupted": true). Null: never.
  std::shared_ptr<const std::atomic<bool>> interrupt;
  /// --balance auto, a pipeline: the job's split moves shortly before this
  /// generation; none is undone (split_rebalancer).
  std::vector<split_move> recent_split_moves;
};

using job_done_atom = caf::atom_constant<caf::atom("jobdone")>;

/// A restore point for recovery: the model, its optimizer state and the
/// trainer's position (loss sums, data loader position) after `step` steps,
/// as a checkpoint in memory. It only travels inside the supervisor's process
/// (trainer -> supervisor), never serialised.
struct job_snapshot {
  std::shared_ptr<const runtime::checkpoint> state;
  std::int64_t step = 0; ///< training steps it holds: the next step to run
};

/// (snapshot_atom, job_snapshot) trainer -> report_to every
/// opts.snapshot_every steps. (snapshot_atom) -> job_snapshot, report_to ->
/// trainer: the trainer stops at the next step boundary and answers with a
/// snapshot there (a re-plan that loses nothing, e.g. growing back).
using snapshot_atom = caf::atom_constant<caf::atom("snapshot")>;
/// (checkpointed_atom, step) trainer -> report_to: a checkpoint of `step`
/// steps is complete in opts.checkpoint_dir.
using checkpointed_atom = caf::atom_constant<caf::atom("ckpointed")>;
/// (salvage_atom, lost state owners) -> job_snapshot, supervisor -> trainer
/// after a failure: the model from the replicas (or parameter servers) still
/// alive, mid-step (see actors::salvage_atom); an error when a stage has no
/// live replica, a ps shard is lost, or the parts disagree on their step.
/// (doing_atom) -> std::string, supervisor -> trainer: JSON of the step in
/// flight and which stages have not reported it yet (stall diagnosis).
/// (progress_atom, JSON) after a training step, every progress_interval and
/// at each epoch's last (progress.hpp): step, total_steps, epoch, loss (epoch
/// mean so far), step_seconds and samples_per_second (of that step),
/// train_seconds (the run's summed step time), and per stage the cumulative
/// messages_sent, bytes_sent and compute_seconds; and after
/// every evaluation batch {"evaluating": true, "step"} (a sign of life); also
/// epochs, epoch_step, epoch_steps and epoch_samples_per_second (the epoch's
/// mean rate), and after each epoch {"epoch_result": {epoch log entry}, "step"}.
using progress_atom = caf::atom_constant<caf::atom("progress")>;
/// (step_done_atom, steps done, the step's seconds) trainer -> report_to
/// after every training step: no JSON, so it costs next to nothing; the
/// supervisor's recovery and stall detection count steps by it.
using step_done_atom = caf::atom_constant<caf::atom("stepdone")>;
/// (rebalance_atom, JSON) trainer -> report_to (--balance auto, rebalancing.hpp):
/// {step, kind, why, old, new}. Kind "shares": the trainer changed the
/// replicas' batch shares at that step boundary itself. Kind "split": it asks
/// for the pipeline's layers to move between stages, which the supervisor
/// does as a re-plan that loses nothing (a snapshot at a step boundary).
using rebalance_atom = caf::atom_constant<caf::atom("rebalance")>;

/// The training steps of a run over `train_samples` samples: ceil(samples /
/// batch) per epoch times the epochs, or opts.max_steps when that is fewer.
/// A cosine learning-rate schedule decays over exactly these steps.
std::int64_t total_training_steps(const train_options& opts, std::int64_t train_samples);

/// Throws runtime::input_error when `ck` cannot continue the job `opts` plans
/// (another model, batch, seed, optimizer or data set size).
void check_resume_compatible(const runtime::checkpoint& ck, const train_options& opts,
                             const plan& topology, std::int64_t train_samples);

/// The trainer actor: drives steps (a batch from each replica's loader, a step_msg with
/// the step's learning rate (opts.lr_schedule) to every stage, inputs to the
/// first stage, labels to the loss stage, then waits for every stage's
/// report), evaluates after each epoch, writes checkpoints at epoch ends and
/// at the end, shows progress, and finally sends (job_done_atom, report,
/// parameters) to report_to and quits. With data parallelism (several
/// replicas) it first has every shard take replica 0's parameters
/// (sync_params_atom), gives each replica its loader's share of every batch,
/// adds the replicas' losses, evaluates on replica 0, checkpoints replica 0,
/// and checks that the replicas agree: equal gradient norms when clipping and,
/// every opts.check_replicas steps, equal parameter digests. With opts.clip_norm it adds up the
/// stages' (grad_sumsq_atom, ...) of a step and answers every stage with
/// (clip_atom, step, total). For a language model (models::is_sequence_model)
/// losses are per token, and the evaluation of the held-out text reports its
/// loss and bits per character instead of an accuracy.
caf::actor spawn_trainer(caf::actor_system& sys, trainer_config cfg);

} // namespace troupe::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::actors::job_snapshot)
