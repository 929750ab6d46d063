#pragma once

// What a layer shard holds and how it runs, and the JSON form a supervisor
// sends to a node agent. Change it when a shard gains a setting.

#include <cstddef>
#include <cstdint>

#include <memory>
#include <vector>

#include <nlohmann/json.hpp>

#include "actors/plan/ps_assignment.hpp"
#include "actors/plan/ps_mode.hpp"
#include "actors/plan/schedule.hpp"
#include "actors/plan/slot.hpp"
#include "models/layers/model_spec.hpp"
#include "models/partitioner.hpp"

namespace troupe::runtime::transport {
class courier;
}

namespace troupe::actors {

/// What a layer shard holds and how it runs.
struct shard_config {
  int stage = 0; ///< position in the pipeline (its device's rank)
  int stages = 1;
  models::model_spec model; ///< the whole model; the shard builds its chunks
  /// The layer ranges it holds: one, or with virtual stages (interleaved and
  /// zbv schedules) one per chunk, chunk v being global virtual stage
  /// virtual_stage_of(v).
  std::vector<models::layer_range> chunks;
  nlohmann::json optimizer; ///< models::make_optimizer config
  std::uint64_t seed = 0;
  schedule_kind schedule = schedule_kind::gpipe;
  std::int64_t fault_step = -1; ///< fault injection: forward of this step throws
  /// Fault injection: the parameters are perturbed after this step's update
  /// (a replica that silently diverged; --check-replicas must catch it).
  std::int64_t perturb_step = -1;
  /// Fault injection: from this step on the shard answers nothing (a hung
  /// actor: alive, silent); -1: never.
  std::int64_t hang_step = -1;
  /// Fault injection: the shard's actor exits when this step starts; -1: never.
  std::int64_t exit_step = -1;
  /// Fault injection: at the start of this step the shard's node cuts every
  /// data-plane connection (as a network cut would); -1: never.
  std::int64_t cut_step = -1;
  bool trace = false; ///< record a timeline for (get_trace_atom)
  /// Benchmarks: each forward and backward takes this many times its compute
  /// time (the device sleeps the rest before sending the result), as a slower
  /// device would. 1: as fast as it is.
  double slow_factor = 1.0;
  /// Global-norm gradient clipping (train_options::clip_norm, 0: off): after
  /// its last backward the shard reports its gradients' sum of squares and
  /// waits for the total over all stages before clipping and its optimizer.
  double clip_norm = 0;
  /// Data parallelism: this shard is stage `stage` of replica `replica` of
  /// `replicas`. With replicas > 1 it all-reduces its gradients with the
  /// same stage of the other replicas (its rank in their collective group,
  /// given by dp_group_atom) before its optimizer step.
  int replica = 0;
  int replicas = 1;
  /// Tensor parallelism: this shard is rank `tp_rank` of the `tp` shards of
  /// its stage; its split layers hold 1/tp of the weights
  /// (models::instantiate_tensor_parallel) and all-reduce through the
  /// collective rank given by tp_group_atom.
  int tp_rank = 0;
  int tp = 1;
  /// Parameter servers (non-empty assignment): after its backward the shard
  /// pushes its gradients to the ps shards holding them (ps_group_atom gives
  /// the shards) and pulls the parameters for the next step instead of
  /// all-reducing and running an optimizer; this shard is worker `replica`.
  ps_assignment ps_layout;
  ps_mode ps = ps_mode::sync;
  /// Gradient buckets of about this many bytes (layers in backward order,
  /// never split across chunks), each all-reduced as soon as the step's last
  /// backward through its layers is done. 0: one bucket per chunk.
  std::int64_t bucket_bytes = std::int64_t{25} << 20;
  /// Every this many steps, report a digest of the parameters after the
  /// update (stage_report::params_digest). 0: never.
  std::int64_t check_replicas = 0;
  /// How activations and gradients leave this process (large tensors to other
  /// processes over the data plane); null in a single-process job. Not part of
  /// the JSON form: the node agent that spawns the shard supplies its own.
  std::shared_ptr<runtime::transport::courier> courier;
  int virtual_stages() const { return static_cast<int>(chunks.size()); }
  /// Where the shard sits in its job, and the job's grid of shards (names, indices).
  slot_id slot() const { return {replica, stage, tp_rank}; }
  slot_grid grid() const { return {replicas, stages, tp}; }
  /// Gradients are all-reduced between replicas (not parameter servers).
  bool all_reduces() const { return replicas > 1 && ps_layout.pieces.empty(); }
  bool uses_ps() const { return !ps_layout.pieces.empty(); }
  /// Chunk v's global virtual stage: the schedule's chunk layout
  /// (actors/plan/schedule.hpp) decides, here and nowhere else in a shard.
  int virtual_stage_of(int v) const { return virtual_stage(layout_of(schedule), stages, stage, v); }
  /// Chunk v takes the trainer's inputs (global virtual stage 0).
  bool takes_input(int v) const { return virtual_stage_of(v) == 0; }
  /// Chunk v computes the loss (the last global virtual stage) and gets the labels.
  bool owns_loss(int v) const { return virtual_stage_of(v) + 1 == stages * virtual_stages(); }
  /// The chunk that does: the last one, on stage 0 in the V layout.
  int loss_chunk() const {
    return layout_of(schedule) == chunk_layout::v_shape ? 1 : virtual_stages() - 1;
  }
  /// Where chunk v's activations go: the next virtual stage (with looped
  /// chunks the last stage feeds chunk v + 1 of stage 0; in the V the last
  /// stage feeds its own chunk 1, and chunk 1 feeds the previous stage).
  stage_position next_of(int v) const {
    return position_of(layout_of(schedule), stages, virtual_stage_of(v) + 1);
  }
  /// Where chunk v's input gradients go: the previous virtual stage.
  stage_position prev_of(int v) const {
    return position_of(layout_of(schedule), stages, virtual_stage_of(v) - 1);
  }
  int next_chunk(int v) const { return next_of(v).chunk; }
  int prev_chunk(int v) const { return prev_of(v).chunk; }
};

/// The JSON form a supervisor sends to a node agent (everything but the courier).
nlohmann::json to_json(const shard_config& c);
/// Throws runtime::input_error for a malformed config.
shard_config shard_config_from_json(const nlohmann::json& j);

} // namespace troupe::actors
