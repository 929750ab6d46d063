#pragma once

// Starting a step on the pipelines: a replica's loader delivers its inputs to
// the first stage and its labels to the loss stage (fetch_batch), then the
// step message goes to every shard of the replica. Change it when a step needs
// something new sent to the shards.

#include <chrono>
#include <cstdint>
#include <vector>

#include "actors/training/trainer_state.hpp"

namespace troupe::actors::training {

/// How long after a step went out its loader is told to prepare the next
/// batch. Told at once, the loader's work (40 us for an MNIST batch of 64)
/// took a CAF worker while the step's own hand-offs were under way: one of
/// the two workers, just woken, got the stages' step message instead, and
/// the time between two single-device steps was 160-200 us; told 100-500
/// us later, 110-135 us (traces, this machine).
inline constexpr std::chrono::microseconds prefetch_delay{200};

/// Asks `loader` for its next batch, delivered as step `step` of replica
/// `replica` (its first stage gets the inputs, its loss stage the labels,
/// every tensor-parallel rank of each); `then` gets the batch's positions
/// and counts, after which the loader is told to prepare the next batch
/// (prefetch_atom, prefetch_delay later). The trainer never holds a sample:
/// a loader on a node sends them to the stages from there.
template <class F>
void fetch_batch(trainer_actor* self, const caf::actor& loader, int replica, std::int64_t step,
                 bool training, F then);

/// Starts a step on replica `replica`'s pipeline, whose inputs `b`'s loader
/// delivered. The learning rate follows global step `schedule_step`
/// (default: `step`; an async worker's own step ids run ahead or behind).
void send_step(trainer_actor* self, int replica, const actors::batch_msg& b, std::int64_t step,
               bool training, std::int64_t schedule_step = -1);

/// Starts a step on every replica, part r on replica r (evaluation: one part,
/// replica 0), and resets st.current to wait for its reports.
void send_steps(trainer_actor* self, const std::vector<actors::batch_msg>& parts, std::int64_t step,
                bool training);

/// The stages a replica's batch goes to: its first stage's and its loss
/// stage's shards, one per tensor-parallel rank.
struct batch_route {
  std::vector<caf::actor> inputs_to;
  std::vector<caf::actor> labels_to;
};
batch_route route_of(const trainer_state& st, int replica);

template <class F>
void fetch_batch(trainer_actor* self, const caf::actor& loader, int replica, std::int64_t step,
                 bool training, F then) {
  auto route = route_of(self->state, replica);
  self->request(loader, caf::infinite, actors::next_batch_atom::value, step, training,
                std::move(route.inputs_to), std::move(route.labels_to))
      .then([self, loader, then = std::move(then)](actors::batch_msg& b) mutable {
        then(b);
        // The step is on its way (then sent it): the loader prepares the
        // next batch while the stages compute.
        self->delayed_send(loader, prefetch_delay, actors::prefetch_atom::value);
      });
}

} // namespace troupe::actors::training
