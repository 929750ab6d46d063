#pragma once

// The trainer actor's state, grouped by concern (the step in flight, the
// epoch, evaluation, async workers, the run's totals), and the helpers every
// part of the trainer uses. Change it when the trainer keeps something new.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_response_promise.hpp>
#include <nlohmann/json.hpp>

#include "actors/plan/rebalancer.hpp"
#include "actors/plan/slot.hpp"
#include "actors/protocol/messages.hpp"
#include "actors/training/progress_bar.hpp"
#include "actors/training/step_series.hpp"
#include "actors/training/trainer.hpp"
#include "models/tensor_parallel.hpp"
#include "models/train/lr_schedule.hpp"
#include "runtime/log.hpp"
#include "runtime/telemetry/trace_recorder.hpp"

namespace troupe::actors::training {

using clock_type = std::chrono::steady_clock;

inline double seconds_between(clock_type::time_point a, clock_type::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

/// The training (or evaluation) step in flight: its batches, the reports and
/// digests still to come and, with clipping, the stages' gradient sums.
struct step_in_flight {
  std::vector<actors::batch_msg> batches; ///< each replica's part, as they arrive
  std::size_t batches_pending = 0;
  int reports_pending = 0;
  actors::stage_report loss;                         ///< the replicas' losses added up
  std::vector<std::optional<std::uint64_t>> digests; ///< per shard, --check-replicas
  std::vector<bool> reported;                        ///< per shard: its report came
  std::vector<double> compute;                       ///< per shard: its reported compute seconds
  std::vector<std::int64_t> samples;                 ///< per replica: its part of the batch
  std::int64_t step = -1;                            ///< the step's id (negative: evaluation)
  bool training = false;
  std::vector<std::optional<double>> grad_sumsq; ///< per shard, --clip-norm
  std::size_t sumsq_pending = 0;
  clock_type::time_point started;
};

/// Where the run is in the current epoch. The loss sums are carried across a
/// resume; mean losses are per prediction (tokens equal samples for a
/// classifier).
struct epoch_state {
  std::int64_t index = 0; ///< the epoch of the last step started
  std::int64_t batch = 0; ///< its batch in that epoch
  double loss_sum = 0;
  std::int64_t samples = 0;
  std::int64_t tokens = 0;
  std::int64_t run_samples = 0; ///< samples of this epoch trained in this run
  double last_loss = -1;        ///< the mean loss of the last finished epoch
  clock_type::time_point started;

  double mean_loss() const { return tokens ? loss_sum / double(tokens) : 0; }
};

/// Evaluation on the held-out set (replica 0 alone) and its last results.
struct eval_state {
  bool running = false;
  std::int64_t batches_left = 0;
  std::int64_t counter = 0; ///< evaluation steps so far (their ids are negative)
  double loss_sum = 0;
  std::int64_t correct = 0;
  std::int64_t samples = 0;
  std::int64_t tokens = 0;
  double test_accuracy = -1;
  double test_loss = -1;
  double bits_per_char = -1;
  double abs_error_sum = 0;
  double test_mae = -1;       ///< regression: mean absolute error (test_loss is the mse)
  std::function<void()> then; ///< runs when the evaluation is done
  /// The first test sample of the batch in flight.
  std::int64_t batch_base = 0;
  /// opts.predict: every test sample's outputs, in test-set order.
  runtime::tensor predictions;
  /// One entry per evaluation of the run: {step, test_loss, test_accuracy or
  /// bits_per_char, test_samples} (the report's "evaluations").
  nlohmann::json log = nlohmann::json::array();
};

/// Async / ssp: where one worker is. Its steps are its own (consecutive ids
/// for its pushes); each runs one part of a global batch.
struct worker_progress {
  std::int64_t next = 0; ///< the step it runs next (or now, when running)
  bool running = false;
  int pending = 0;       ///< reports of its running step still missing
  std::int64_t part = 0; ///< the part it runs: share part % W of global batch part / W
};

/// A global batch whose parts (one per replica's share) are being trained:
/// how many are done, and their losses.
struct step_part {
  int done = 0;
  actors::stage_report loss;
};

/// Async and ssp parameter servers: the workers (replicas) run their own steps.
struct async_state {
  std::vector<worker_progress> workers;
  std::int64_t next_part = 0;              ///< parts handed out so far
  std::map<std::int64_t, step_part> parts; ///< global steps some parts are done of
};

/// The whole run's totals, for progress messages and the report.
struct run_totals {
  clock_type::time_point started = clock_type::now();
  double train_seconds = 0;
  clock_type::time_point progress_sent{}; ///< of the last progress message ({}: none yet)
  std::int64_t samples = 0;
  double compute_seconds = 0;
  // Steps of this run after opts.timing_warmup (benchmarks): their summed
  // durations and the device compute time the stages reported for them.
  std::int64_t timed_steps = 0;
  double timed_seconds = 0;
  double timed_compute_seconds = 0;
  double grad_norm = -1;               ///< the last step's, before clipping
  std::int64_t replica_checks = 0;     ///< steps whose replicas were found identical
  std::int64_t digest_comparisons = 0; ///< digest pairs compared (replica r vs 0, per shard)
  nlohmann::json epoch_log = nlohmann::json::array();
  std::vector<actors::stage_report> stages; ///< per shard, training steps summed
  std::optional<nlohmann::json> ps_stats;   ///< the ps shards' counters, once gathered
  runtime::trace_recorder trace;            ///< the trainer's own track (--trace)
  step_series series;                       ///< per-step figures (the report's "step_series")
  bool trace_written = false;
  bool interrupted = false; ///< stopped early by trainer_config::interrupt
};

/// Recovery's restore points (snapshots.hpp): snapshots to the supervisor's
/// process and periodic checkpoints written in the background.
struct snapshot_state {
  std::int64_t interval = 0;         ///< steps between snapshots (0: none)
  bool automatic = false;            ///< interval chosen by the trainer (opts.snapshot_every -1)
  bool in_flight = false;            ///< a gather is under way
  bool writing = false;              ///< a checkpoint is being written in the background
  std::function<void()> after_write; ///< runs once the background write ended
  std::int64_t last_checkpoint_step = -1;
  clock_type::time_point last_checkpoint = clock_type::now();
  std::int64_t taken = 0;
  std::int64_t discarded = 0; ///< gathers whose parts disagreed on their step
  double seconds = 0;         ///< summed request-to-assembly time of the snapshots taken
  /// A re-plan asked for a snapshot at the next step boundary; the trainer
  /// stops there.
  std::optional<caf::typed_response_promise<job_snapshot>> pause;
  bool paused = false;
  std::int64_t last_boundary = -1; ///< the last step boundary seen
  /// Parameter servers: every parameter's whole shape (the ps shards hold pieces).
  std::map<std::string, runtime::shape_t> ps_shapes;
};

/// --balance auto while the job runs (rebalancing.hpp): one of the two
/// rebalancers, by topology.
struct rebalancing_state {
  std::optional<share_rebalancer> shares;
  std::optional<split_rebalancer> split;
  bool split_asked = false;                     ///< a new split was asked of the supervisor
  nlohmann::json log = nlohmann::json::array(); ///< {step, kind, why, old, new}
};

struct trainer_state {
  trainer_config cfg;
  std::shared_ptr<spdlog::logger> log = runtime::logger("trainer");
  slot_grid grid;
  std::int64_t steps_per_epoch = 0;
  std::int64_t total_steps = 0;
  std::int64_t step = 0; ///< global index of the next training step
  std::int64_t run_start_step = 0;
  bool language_model = false; ///< losses per token, evaluation in bits per character
  std::optional<models::lr_schedule> schedule; ///< none: every step at opts.lr
  /// tp > 1: how each parameter is split across a stage's shards.
  std::map<std::string, std::vector<models::tp_param_split>> tp_layout;
  step_in_flight current;
  epoch_state epoch;
  eval_state eval;
  async_state async;
  run_totals totals;
  snapshot_state snap;
  rebalancing_state rebalance;
  progress_bar progress;
  static inline const char* name = "trainer";
};

using trainer_actor = caf::stateful_actor<trainer_state>;

/// Fails the trainer, and so the job, with "trainer: `what`".
void fail(trainer_actor* self, const std::string& what);

/// Async and ssp parameter servers: the workers run on their own, a fast one
/// ahead of a slow one as far as the ps shards let it; the trainer only holds
/// them at the epoch's end.
bool independent_workers(const trainer_state& st);

/// The shards of replica 0: its pipeline in stage order, each stage's
/// tensor-parallel ranks in order (checkpoints, the final parameters and
/// evaluation use them; the replicas are identical).
std::vector<caf::actor> first_replica(const trainer_state& st);

/// The learning rate of training step `step`.
float learning_rate(const trainer_state& st, std::int64_t step);

/// Sends `xs` to every actor of `to`; calls `done` with the replies in that
/// order. The first error fails the trainer (and so the job).
template <class Reply, class... Ts>
void gather(trainer_actor* self, std::vector<caf::actor> to,
            std::function<void(std::vector<Reply>)> done, Ts... xs) {
  auto n = to.size();
  struct pending {
    std::vector<Reply> replies;
    std::size_t left;
  };
  auto acc = std::make_shared<pending>(pending{std::vector<Reply>(n), n});
  for (std::size_t i = 0; i < n; ++i)
    self->request(to[i], caf::infinite, xs...)
        .then(
            [acc, i, done](Reply& r) {
              acc->replies[i] = std::move(r);
              if (--acc->left == 0)
                done(std::move(acc->replies));
            },
            [self](caf::error& err) {
              fail(self, "stage request failed: " + self->system().render(err));
            });
}

} // namespace troupe::actors::training
