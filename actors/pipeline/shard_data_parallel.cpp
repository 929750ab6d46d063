#include "actors/pipeline/shard_data_parallel.hpp"

#include <chrono>
#include <memory>
#include <string>
#include <utility>

#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>

#include "actors/collectives/shared_reduction.hpp"
#include "actors/pipeline/gradient_buckets.hpp"
#include "actors/pipeline/shard_state.hpp"
#include "actors/pipeline/update_work.hpp"
#include "actors/protocol/messages.hpp"
#include "models/train/optimizer.hpp"

namespace troupe::actors::detail {

using runtime::tensor;
using steady_clock = std::chrono::steady_clock;

namespace {

/// Plain SGD and no clipping: the update can be made slice by slice as the
/// shared reduction sums (one parameter copy for the process's replicas).
/// Not with --check-replicas, which asks whether the replicas' updates
/// agree: each keeps its own copy and makes its own update, so there is
/// something to compare (one shared copy would be compared with itself).
std::optional<kernels::cpu::sgd_options> fused_sgd_options(const compute_state& c) {
  const auto* sgd = dynamic_cast<const models::sgd*>(c.opt.get());
  if (sgd == nullptr || !sgd->is_plain_sgd() || c.cfg.clip_norm > 0 || c.cfg.check_replicas > 0)
    return std::nullopt;
  return sgd->options();
}

/// A bucket's all-reduced sum came back.
void on_allreduced(shard_actor* self, std::int64_t step, std::size_t bucket, tensor& sum) {
  auto& s = self->state;
  if (!s.step || s.step->step != step)
    return;
  const auto t = steady_clock::now();
  s.trace.recorder.complete("allreduce", "comm", s.allreduce.launched_at[bucket], t,
                            {{"step", step},
                             {"bucket", static_cast<std::int64_t>(bucket)},
                             {"bytes", static_cast<std::int64_t>(sum.nbytes())}});
  if (auto seconds = s.allreduce.arrived(bucket, std::move(sum), t))
    s.report.allreduce_seconds = *seconds;
  s.trace.input("allreduce", step, -1);
  advance(self);
}

} // namespace

/// A bucket's gradients are complete on the device; its all-reduce runs in
/// the stage's collective group while backward goes on.
void start_allreduce(shard_actor* self, bucket_ready& b) {
  auto& st = self->state;
  if (!st.step || st.step->step != b.step || !st.group || b.bucket >= st.allreduce.reduced.size()) {
    fail(self, "gradient bucket " + std::to_string(b.bucket) + " of step " +
                   std::to_string(b.step) + " outside a data-parallel step");
    return;
  }
  st.allreduce.launched(b.bucket, steady_clock::now());
  st.report.buckets += 1;
  st.report.allreduce_bytes += b.data.nbytes();
  self->request(st.group, caf::infinite, actors::allreduce_atom::value,
                allreduce_op_id(b.step, b.bucket), std::move(b.data))
      .then([self, step = b.step,
             bucket = b.bucket](tensor& sum) { on_allreduced(self, step, bucket, sum); },
            [self](caf::error& err) { step_failed(self, "gradient all-reduce failed", err); });
}

/// (sync_params_atom): replica 0 broadcasts its parameters in the stage's
/// group, the others load them; answered once they are in place.
caf::result<bool> sync_params(shard_actor* self) {
  auto& st = self->state;
  if (!st.cfg.all_reduces()) // one replica, or parameter servers (same init everywhere)
    return true;
  if (!st.group)
    return caf::make_error(caf::sec::runtime_error,
                           st.label + ": parameter broadcast before its collective group");
  auto rp = self->make_response_promise<bool>();
  auto mine = st.cfg.replica == 0 ? flatten_values(*st.compute) : tensor{};
  self->request(st.group, caf::infinite, actors::broadcast_atom::value,
                broadcast_op_id(++st.broadcasts), std::int32_t{0}, std::move(mine))
      .then(
          [self, rp](tensor& all) mutable {
            try {
              load_flat_values(*self->state.compute, all);
            } catch (const std::exception& e) {
              rp.deliver(
                  caf::make_error(caf::sec::runtime_error, self->state.label + ": " + e.what()));
              return;
            }
            rp.deliver(true);
          },
          [self, rp](caf::error& err) mutable {
            rp.deliver(caf::make_error(
                caf::sec::runtime_error,
                self->state.label + ": parameter broadcast failed: " + self->system().render(err)));
          });
  return rp;
}

/// (dp_group_atom, rank, devices_own): the shard's collective rank. When
/// the whole group lives in this process and no member's device runs another
/// shard (`devices_own`: a device thread waiting in the reduction would
/// block that shard's work, which may be what the wait is for), the device
/// thread all-reduces its buckets itself, on the group's shared reduction
/// (asked of the rank); it is aborted when this shard ends, so that no
/// replica's device waits for it in vain.
caf::result<bool> join_dp_group(shard_actor* self, caf::actor group, bool devices_own) {
  auto& s = self->state;
  s.group = group;
  if (!devices_own || !group || group.node() != self->node() || !s.cfg.all_reduces())
    return true;
  auto rp = self->make_response_promise<bool>();
  self->request(group, std::chrono::seconds(30), actors::shared_reduction_atom::value)
      .then(
          [self, rp](shared_reduction_ref& ref) mutable {
            auto& st = self->state;
            if (ref.reduction) {
              st.compute->buckets.shared = ref.reduction;
              st.compute->buckets.member = st.cfg.replica;
              st.compute->buckets.fused_sgd = fused_sgd_options(*st.compute);
              self->attach_functor([red = ref.reduction, sys = &self->system(),
                                    label = st.label](const caf::error& reason) {
                red->abort(label + " ended: " + (reason ? sys->render(reason) : "normally"));
              });
            }
            rp.deliver(true);
          },
          [self, rp](caf::error& e) mutable {
            rp.deliver(false);
            fail(self, "its collective rank did not say whether the group is in this process: " +
                           self->system().render(e));
          });
  return rp;
}

} // namespace troupe::actors::detail
