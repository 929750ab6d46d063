#include "actors/training/step_dispatch.hpp"

#include <utility>

#include "runtime/net/transport/courier.hpp"

namespace troupe::actors::training {

void send_step(trainer_actor* self, int replica, actors::batch_msg& b, std::int64_t step,
               bool training, std::int64_t schedule_step) {
  auto& st = self->state;
  const auto& g = st.grid;
  auto parts = static_cast<std::int32_t>(b.inputs.size());
  const auto lr_step = schedule_step >= 0 ? schedule_step : step;
  actors::step_msg m{step, parts, b.size, training ? learning_rate(st, lr_step) : st.cfg.opts.lr,
                     training};
  m.outputs = !training && st.cfg.opts.predict;
  for (int k = 0; k < g.depth; ++k)
    for (int t = 0; t < g.tp; ++t)
      self->send(st.cfg.stages[g.index({replica, k, t})], m);
  // Inputs go to chunk 0 of the first stage, labels to the stage holding
  // the last virtual stage (it owns the loss): the last stage, or the first
  // in zbv's V; every tensor-parallel rank of those stages gets them (the
  // tensors are shared, not copied, in process).
  const int loss_stage = actors::loss_stage(st.cfg.opts.schedule, g.depth);
  for (int t = 0; t < g.tp; ++t) {
    const auto& first = st.cfg.stages[g.index({replica, 0, t})];
    const auto& last = st.cfg.stages[g.index({replica, loss_stage, t})];
    const bool final = t + 1 == g.tp;
    for (std::int32_t i = 0; i < parts; ++i) {
      auto k = static_cast<std::size_t>(i);
      self->send(last, actors::labels_msg{step, i, final ? std::move(b.labels[k]) : b.labels[k]});
      runtime::transport::deliver(
          st.cfg.courier, first,
          actors::activation_msg{step, i, b.offsets[k], training,
                                 final ? std::move(b.inputs[k]) : b.inputs[k]});
    }
  }
}

void send_steps(trainer_actor* self, std::vector<actors::batch_msg>& parts, std::int64_t step,
                bool training) {
  auto& st = self->state;
  auto& cur = st.current;
  const auto shards = st.cfg.stages.size();
  if (training && st.cfg.opts.clip_norm > 0) {
    cur.grad_sumsq.assign(shards, std::nullopt);
    cur.sumsq_pending = shards;
  }
  cur.digests.assign(shards, std::nullopt);
  cur.reported.assign(shards, false);
  cur.compute.assign(shards, 0.0);
  cur.samples.assign(parts.size(), 0);
  for (std::size_t r = 0; r < parts.size(); ++r)
    for (const auto& x : parts[r].inputs)
      cur.samples[r] += x.dim(0);
  cur.step = step;
  cur.training = training;
  for (std::size_t r = 0; r < parts.size(); ++r)
    send_step(self, static_cast<int>(r), parts[r], step, training);
  cur.reports_pending = static_cast<int>(parts.size() * st.grid.depth * st.grid.tp);
  cur.loss = {};
}

} // namespace troupe::actors::training
