#include "actors/training/step_dispatch.hpp"

namespace troupe::actors::training {

batch_route route_of(const trainer_state& st, int replica) {
  const auto& g = st.grid;
  // Inputs go to chunk 0 of the first stage, labels to the stage holding
  // the last virtual stage (it owns the loss): the last stage, or the first
  // in zbv's V; every tensor-parallel rank of those stages gets them.
  const int loss_stage = actors::loss_stage(st.cfg.opts.schedule, g.depth);
  batch_route r;
  for (int t = 0; t < g.tp; ++t) {
    r.inputs_to.push_back(st.cfg.stages[g.index({replica, 0, t})]);
    r.labels_to.push_back(st.cfg.stages[g.index({replica, loss_stage, t})]);
  }
  return r;
}

void send_step(trainer_actor* self, int replica, const actors::batch_msg& b, std::int64_t step,
               bool training, std::int64_t schedule_step) {
  auto& st = self->state;
  const auto& g = st.grid;
  auto parts = static_cast<std::int32_t>(b.counts.size());
  const auto lr_step = schedule_step >= 0 ? schedule_step : step;
  actors::step_msg m{step, parts, b.size, training ? learning_rate(st, lr_step) : st.cfg.opts.lr,
                     training};
  m.outputs = !training && st.cfg.opts.predict;
  for (int k = 0; k < g.depth; ++k)
    for (int t = 0; t < g.tp; ++t)
      self->send(st.cfg.stages[g.index({replica, k, t})], m);
}

void send_steps(trainer_actor* self, const std::vector<actors::batch_msg>& parts, std::int64_t step,
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
    for (auto n : parts[r].counts)
      cur.samples[r] += n;
  cur.step = step;
  cur.training = training;
  for (std::size_t r = 0; r < parts.size(); ++r)
    send_step(self, static_cast<int>(r), parts[r], step, training);
  cur.reports_pending = static_cast<int>(parts.size() * st.grid.depth * st.grid.tp);
  cur.loss = {};
}

} // namespace troupe::actors::training
