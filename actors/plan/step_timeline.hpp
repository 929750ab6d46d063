#pragma once

#include <cstdint>
#include <vector>

#include <nlohmann/json.hpp>

namespace troupe::actors {

/// One training step of a pipeline as its trace (job_trace(), `--trace`)
/// shows it: per stage, how long it was inside the step and how much of that
/// it computed, waited for an input, or spent in the runtime. What `troupe
/// bench pipeline` measures bubbles and overhead from. Times are seconds from
/// the trace's origin.
struct step_timeline {
  /// One stage's part of the step (its track's events with this step's id).
  struct stage {
    int index = 0;             ///< the stage
    int replica = 0;           ///< data parallelism's replica ("replica R stage K" tracks)
    double begin = 0, end = 0; ///< its `step` span: step_msg handled .. report sent
    double forward = 0, backward = 0, optimizer = 0; ///< summed compute events
    double weight = 0; ///< summed `weight` events (split backwards: zb1, zbv)
    double wait = 0;   ///< summed `wait` events (nothing to run, input missing)
    /// Summed forward / backward / weight events per chunk (virtual stage on this device).
    std::vector<double> forward_by_chunk, backward_by_chunk, weight_by_chunk;
    double grad_norm = 0; ///< summed `grad norm` events (clipping), not in busy()
    /// Tensor copies inside the compute events (their copy_ns): in forward and
    /// backward, and in the optimizer and grad norm. copies_measured: some
    /// compute event carried copy_ns (older traces do not).
    double compute_copies = 0, optimizer_copies = 0;
    bool copies_measured = false;
    double handoffs = 0; ///< summed `handoff` events: shard <-> device thread messages
    /// The end of its last forward, backward or weight event, and of its last
    /// all-reduce (data parallelism; 0 when it ran none).
    double last_compute_end = 0, allreduce_end = 0;

    double span() const { return end - begin; }
    double busy() const { return forward + backward + weight + optimizer; }
    /// Inside the step, neither computing nor waiting: messages between the
    /// shard and its device thread, wake-ups, bookkeeping.
    double overhead() const { return span() - busy() - wait; }
  };

  std::int64_t step = 0;
  int microbatches = 0;
  double trainer_seconds = 0; ///< the trainer's step (batch request .. last report); 0: none
  double trainer_begin = 0;   ///< when the trainer's step began (with trainer_seconds)
  double trainer_wait = 0;    ///< its `wait batch`: the data loaders' batch, before step_msgs
  std::vector<stage> stages;  ///< by (replica, stage index): replica 0's stages first

  /// The step's time T: from the first stage's step_msg to the last stage's report.
  double begin() const;
  double end() const;
  double seconds() const { return end() - begin(); }
  /// Sum over the P stages of (T - busy) / (P x T): the stages' idle share
  /// of the step, optimizer counted as work.
  double bubble() const;
};

/// The training steps of a Chrome trace written by job_trace() that every
/// stage track has a `step` span for, in step order (evaluation steps are
/// left out). Tracks are found by their names ("stage K (...)", "trainer
/// (...)"), so traces of several processes work too. Throws
/// runtime::input_error when the document is not such a trace.
std::vector<step_timeline> step_timelines(const nlohmann::json& chrome_trace);

} // namespace troupe::actors
