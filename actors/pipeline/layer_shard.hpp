#pragma once

// The layer-shard actor's interface: its protocol and how to spawn it.
// Its parts live beside it: shard_state (its state, internal),
// shard_data_parallel (dp group, all-reduce, broadcast handlers),
// shard_config (settings), shard_compute (model, optimizer, inputs),
// step_runner (the device side of a step), gradient_buckets (data-parallel
// all-reduce), ps_worker (parameter servers), update_work (clipping and the
// optimizer), shard_trace (timeline).

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>

#include "actors/pipeline/shard_config.hpp"

namespace troupe::actors {

/// A layer-shard actor: holds the layer chunks of its device and their
/// optimizer state (one optimizer over all chunks), and runs forward/backward
/// for them on its device actor, following its schedule, which orders the
/// chunks too (runtime/net/messages.hpp protocol):
///
///   (wire_atom, device, prev, next) -> bool  peers: the shards of stages
///                   stage - 1 and stage + 1, wrapping round (stage 0's prev is
///                   the last stage) with virtual stages; null at the ends
///   step_msg        begin a step: the schedule for (stages, stage, microbatches,
///                   virtual stages); its sender (the trainer) gets the stage_report
///   activation_msg  input of a micro-batch for a chunk (from prev, or the
///                   trainer for chunk 0 of stage 0)
///   gradient_msg    gradient of a micro-batch's output for a chunk (from next)
///   labels_msg      labels of a micro-batch (to the shard whose chunk owns
///                   the loss: the last stage's last chunk, stage 0's chunk 1
///                   with zbv): class ids [mb], or next-token targets
///                   [mb, T] for a language model (models::is_sequence_model),
///                   whose loss is the per-token sequence cross-entropy
///   (clip_atom, step, total sum of squares)   with cfg.clip_norm > 0: the
///                   trainer's answer to this shard's (grad_sumsq_atom, step,
///                   stage, sum of squares), sent when its gradients were
///                   complete; the shard then clips with the global total
///                   (exactly what clipping the unsplit model does) and steps
///   (get_params_atom) -> named_tensors        between steps only
///   (set_params_atom, named_tensors)          load parameters (resume, broadcast)
///   (get_state_atom) -> named_tensors         optimizer state (checkpoints)
///   (set_state_atom, named_tensors)
///   (get_trace_atom) -> std::string           trace events (cfg.trace), between steps only
///   (dp_group_atom, caf::actor rank, bool devices_own) -> bool  data
///                   parallelism: its collective rank, and whether no device
///                   of the group runs another shard (the shared reduction's
///                   condition, besides the whole group in this process)
///   (tp_group_atom, caf::actor rank) -> bool  tensor parallelism: its rank in the
///                   stage's tensor-parallel group
///   (ps_group_atom, std::vector<caf::actor>) -> bool  parameter servers (by shard)
///   ps_msg          pulled parameters from a ps shard
///   (sync_params_atom) -> bool                take replica 0's parameters (broadcast)
///
/// Data parallelism (cfg.replicas > 1): the gradients are cut into buckets
/// (cfg.bucket_bytes, in the order backward produces them). During the step's
/// last backward through a chunk, the device thread flattens each bucket the
/// moment the layers it covers are done and hands it to the shard, which
/// starts its all-reduce (allreduce_op_id()) while backward goes on
/// below. When every replica of the stage lives in this process the device
/// thread brings the bucket to the group's shared reduction instead
/// (actors/collectives/shared_reduction.hpp, asked of the rank at
/// dp_group_atom) and, after the backward, helps sum and takes every
/// bucket's sum itself, then runs the update in the same task: no message
/// per bucket. Gradients are scaled by 1 / global batch already, so the sum
/// over replicas is the exact gradient of the global batch whatever each
/// replica's share. Once every bucket's sum is back the shard clips (if
/// asked) and steps the optimizer with the summed gradients: every replica
/// applies bitwise-identical gradients to bitwise-identical parameters. A
/// replica with no samples in a step contributes zeros.
///
/// After the last action of a training step it applies the optimizer once and
/// sends a stage_report to the trainer. Messages of a step may arrive before
/// its step_msg (different senders); they wait in the shard's buffers. Any
/// failure (bad labels, a kernel exception, an unexpected message) ends the
/// shard with an error that names it, which its supervisor turns into a job
/// failure.
caf::actor spawn_layer_shard(caf::actor_system& sys, shard_config cfg);

} // namespace troupe::actors
