#pragma once

// Data parallelism's gradient buckets: cutting a shard's parameters into
// buckets, handing each to the shard once backward completed it, the op ids
// its collectives run under, and the shard's count of returned sums.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <vector>

#include <caf/actor.hpp>
#include <caf/allowed_unsafe_message_type.hpp>

#include "actors/collectives/shared_reduction.hpp"
#include "kernels/cpu/optimizers.hpp"
#include "models/layers/sequential.hpp"
#include "runtime/telemetry/trace_recorder.hpp"
#include "runtime/tensor.hpp"

namespace troupe::actors {

/// At most this many buckets per shard: allreduce_op_id packs the bucket
/// into the low 16 bits.
inline constexpr std::size_t max_gradient_buckets = 65536;

/// The collective op id of bucket `bucket`'s all-reduce in step `step`:
/// step * 65536 + bucket. Every replica of a stage derives the same id for
/// the same bucket, which is how the collective group pairs their requests;
/// ids stay positive and grow with the step.
std::int64_t allreduce_op_id(std::int64_t step, std::size_t bucket);

/// The op id of a shard's n-th parameter broadcast (n >= 1): -n, clear of
/// every all-reduce id.
std::int64_t broadcast_op_id(std::int64_t n);

/// Parameters whose gradients are all-reduced together, flattened in this
/// order. Complete once the step's last backward through its chunk has
/// passed layer `ready_layer` (the lowest layer it covers).
struct grad_bucket {
  std::vector<models::parameter*> params;
  std::int64_t numel = 0;
  std::size_t chunk = 0;
  std::size_t ready_layer = 0; ///< local layer index within the chunk
};

/// The device thread flattened a bucket whose backward is complete; the
/// shard starts its all-reduce.
struct bucket_ready {
  std::int64_t step = 0;
  std::size_t bucket = 0;
  runtime::tensor data;
};

/// A bucket's gradients as one f32 tensor (zeros for a parameter that got no
/// gradient this step: a replica without samples). When the gradients are
/// still the in-place views of `staged` (gradient_buckets::stage), that is
/// `staged` itself (no copy); a bucket of one parameter hands over the
/// gradient itself; else a copy.
runtime::tensor flatten(const grad_bucket& b, const runtime::tensor& staged);

/// Makes a bucket's all-reduced sum its parameters' gradients: views of the
/// sum, no copy (the optimizer reads the reduced buffer). Each parameter's
/// own gradient tensor is appended to `own`, to be put back after the update
/// so that the next backward writes into it instead of allocating.
void unflatten(const grad_bucket& b, const runtime::tensor& sum, std::vector<runtime::tensor>& own);

/// A shard's buckets, on the device side (the compute state holds them).
struct gradient_buckets {
  std::vector<grad_bucket> buckets;
  /// at[chunk][layer]: the buckets that layer completes.
  std::vector<std::vector<std::vector<std::size_t>>> at;
  std::vector<bool> launched; ///< per bucket, in the current step
  /// The parameters' own gradient tensors (bucket order) while their grads
  /// are views of the reduced sums: between put_back and restore_grads.
  std::vector<runtime::tensor> own_grads;
  /// Per bucket, this step's flat buffer, of which the parameters'
  /// gradients are in-place views (stage()): the backward writes them where
  /// the all-reduce reads them. Undefined for a bucket that is not all f32.
  std::vector<runtime::tensor> staged;
  /// Every replica of the stage in this process: the device thread
  /// all-reduces each bucket itself (shared_reduction), as member `member`,
  /// instead of handing it to the shard's collective rank. Set at wiring.
  std::shared_ptr<shared_reduction> shared;
  int member = 0;
  /// Plain SGD with a shared reduction (set at wiring): the replicas of the
  /// process keep one parameter copy, member 0's, and the threads that sum
  /// a bucket's slices update that copy in the same pass; no optimizer pass
  /// follows. Member 0's parameters are then written in place (no copy on
  /// write), so collect_params hands out copies.
  std::optional<kernels::cpu::sgd_options> fused_sgd;
  /// Member 0 (fused_sgd): per bucket, the parameter tensors it shared last.
  std::vector<std::vector<runtime::tensor>> published;
  /// The last gather found every bucket updated in the reduction: the step's
  /// optimizer pass is made (read and cleared by the update).
  bool updated_in_reduction = false;
  /// Per bucket, when it was launched in the current step (shared only).
  std::vector<std::chrono::steady_clock::time_point> launched_at;
  /// The device thread waits in gather() (read by the shard's stall report).
  std::atomic<bool> gathering{false};

  /// Cuts the parameters of every chunk into buckets of about `bytes` bytes,
  /// walking each chunk's layers from the last (backward's order). A bucket
  /// never spans chunks; bytes == 0 gives one bucket per chunk. Throws
  /// runtime::input_error for more than max_gradient_buckets.
  void cut(std::vector<models::sequential>& chunks, std::int64_t bytes);

  /// Before a step's backward (cut() and the update call it): every bucket
  /// gets a fresh flat buffer and its parameters' gradients become in-place
  /// views of their ranges, marked fresh. A fresh buffer per step is what
  /// makes writing in place safe: the previous step's buffer may still be
  /// read by the all-reduce's peers, and nobody else ever reads this one
  /// before launch() hands it over, after which the step writes it no more.
  void stage();

  /// On the device thread: sends `shard` a bucket_ready for every bucket of
  /// `chunk` that layer `layer` completes (every bucket not yet sent when
  /// `layer` is empty), or with a shared reduction brings it there.
  /// `lr` is the step's learning rate (fused_sgd).
  void launch(const caf::actor& shard, std::int64_t step, float lr, std::size_t chunk,
              std::optional<std::size_t> layer, runtime::trace_recorder& trace);

  /// Member 0 (fused_sgd): bucket `b`'s parameter tensors, each made its own
  /// storage (copied once) unless it is the one shared the step before.
  std::vector<runtime::tensor> own_parameters(std::size_t b);

  /// Bucket `b`'s buffer goes to the all-reduce: its gradients become plain
  /// views of it (a write would copy again) until the next stage().
  void hand_over(std::size_t b);

  /// Shared reduction: waits for the sum of every bucket of `step` (all
  /// launched) and puts them in place (put_back); records an "allreduce"
  /// span per bucket in `trace`. Throws reduction_aborted when a replica
  /// ended. The returned figures are the step's all-reduce figures.
  struct gathered {
    std::int32_t buckets = 0;
    std::uint64_t bytes = 0;
    double seconds = 0;   ///< first launch to the last sum
    bool updated = false; ///< fused_sgd: every bucket's update is made
  };
  gathered gather(std::int64_t step, runtime::trace_recorder& trace);

  /// The all-reduced sums, bucket by bucket, as the gradients (views; no
  /// copy). Does nothing for no sums (they are in place already).
  void put_back(const std::vector<runtime::tensor>& sums);

  /// After the update: the parameters get their own gradient tensors back
  /// (the reduced sums are released; the next backward overwrites them).
  void restore_grads();
};

/// The shard's side of a step's all-reduces: which sums are back, and when
/// each bucket went out (the report's and the trace's timings).
struct allreduce_progress {
  std::vector<runtime::tensor> reduced; ///< per bucket: the sum, once back
  std::size_t expected = 0;
  std::size_t done = 0;
  bool flush_requested = false; ///< buckets without a backward are being launched
  std::optional<std::chrono::steady_clock::time_point> first_launch;
  std::map<std::size_t, std::chrono::steady_clock::time_point> launched_at;

  void begin_step(std::size_t buckets);
  bool complete() const { return done == expected; }
  void launched(std::size_t bucket, std::chrono::steady_clock::time_point now);
  /// Stores a returned sum; the seconds since the first launch when it was
  /// the step's last.
  std::optional<double> arrived(std::size_t bucket, runtime::tensor sum,
                                std::chrono::steady_clock::time_point now);
  /// The sums, for the update to put in place (empty afterwards).
  std::vector<runtime::tensor> take();
};

} // namespace troupe::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::actors::bucket_ready)
