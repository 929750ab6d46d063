#include "actors/pipeline/update_work.hpp"

#include <algorithm>
#include <utility>

#include "models/train/grad_clip.hpp"

namespace troupe::actors {

bool folds_optimizer(const shard_config& cfg) {
  return !cfg.all_reduces() && !cfg.uses_ps() && !(cfg.clip_norm > 0) &&
         !splits_backward(cfg.schedule);
}

void update_layer(compute_state& c, std::size_t chunk, std::size_t layer, float lr) {
  std::vector<models::parameter*> ps;
  for (auto& p : c.chunks.at(chunk).at(layer).parameters())
    ps.push_back(&p);
  if (!ps.empty())
    c.opt->update(ps, lr);
}

device_work flush_buckets_work(std::shared_ptr<compute_state> c, caf::actor shard,
                               std::int64_t step, float lr) {
  return [c = std::move(c), shard = std::move(shard), step, lr]() {
    c->buckets.launch(shard, step, lr, 0, std::nullopt, c->trace);
    return task_done{};
  };
}

device_work gather_sums_work(std::shared_ptr<compute_state> c, std::int64_t step) {
  return [c = std::move(c), step]() {
    const auto g = c->buckets.gather(step, c->trace);
    task_done d;
    d.buckets = g.buckets;
    d.allreduce_bytes = g.bytes;
    d.allreduce_seconds = g.seconds;
    d.updates_in_reduction = g.updated ? 1 : 0;
    return d;
  };
}

device_work grad_norm_work(std::shared_ptr<compute_state> c, std::vector<runtime::tensor> sums) {
  return [c = std::move(c), sums = std::move(sums)]() {
    c->buckets.put_back(sums);
    task_done d;
    d.grad_sumsq = c->grad_sum_of_squares();
    return d;
  };
}

device_work optimizer_work(std::shared_ptr<compute_state> c, std::vector<runtime::tensor> sums,
                           float lr, double clip_norm, std::optional<double> total,
                           std::int64_t step) {
  return [c = std::move(c), sums = std::move(sums), lr, clip_norm, total, step]() {
    std::lock_guard lock{c->update_mutex};
    c->buckets.put_back(sums);
    auto params = c->parameters();
    if (total)
      models::clip_by_global_norm(params, *total, clip_norm);
    if (folds_optimizer(c->cfg) || std::exchange(c->buckets.updated_in_reduction, false))
      c->opt->count_step(); // made during the backward, or in the shared reduction
    else
      c->opt->step(params, lr);
    for (auto& chunk : c->chunks)
      chunk.zero_grad();
    std::fill(c->buckets.launched.begin(), c->buckets.launched.end(), false);
    task_done d;
    d.digest = after_update(*c, step);
    c->buckets.restore_grads();
    c->buckets.stage();
    return d;
  };
}

} // namespace troupe::actors
