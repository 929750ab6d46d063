#include "actors/training/rebalancing.hpp"

#include <algorithm>

#include "actors/pipeline/data_loader.hpp"
#include "actors/plan/balance.hpp"

namespace troupe::actors::training {

namespace {

nlohmann::json split_json(const std::vector<models::layer_range>& split) {
  auto j = nlohmann::json::array();
  for (const auto& r : split)
    j.push_back({r.begin, r.end});
  return j;
}

/// Runs on more than one process (the devices of unlike nodes).
bool on_a_cluster(const plan& p) {
  return std::any_of(p.devices.begin(), p.devices.end(),
                     [](const device_slot& d) { return d.node != "local"; });
}

/// The plan's stage costs per step (measured per micro-batch of the
/// profile's size; a step runs the whole batch through every stage).
models::stage_costs step_costs(const plan& p, std::int64_t batch) {
  auto c = replica_costs(p, 0);
  const auto& d = p.devices.at(p.slot(0, 0).device);
  const double scale = static_cast<double>(batch) /
                       static_cast<double>(std::max<std::int64_t>(1, d.profile_microbatch));
  for (auto* rows : {&c.layer, &c.boundary})
    for (auto& row : *rows)
      for (double& x : row)
        x *= scale;
  return c;
}

void record(trainer_actor* self, nlohmann::json entry) {
  auto& st = self->state;
  st.log->info("step {}: rebalanced ({}): {}", entry.at("step").get<std::int64_t>(),
               entry.at("kind").get<std::string>(), entry.at("why").get<std::string>());
  st.rebalance.log.push_back(entry);
  self->send(st.cfg.report_to, rebalance_atom::value, entry.dump());
}

} // namespace

void init_rebalancing(trainer_state& st) {
  const auto& o = st.cfg.opts;
  const auto& p = st.cfg.topology;
  auto& rb = st.rebalance;
  rb = {};
  if (o.balance != balance_mode::automatic || !on_a_cluster(p) || independent_workers(st))
    return;
  if (p.replicas > 1 && o.batch_shares.empty()) {
    std::vector<replica_cost> planned;
    if (p.balance == balance_mode::automatic)
      for (int r = 0; r < p.replicas; ++r)
        planned.push_back(replica_model(p, r));
    rb.shares.emplace(p.batch_shares, rebalance_settings{}, std::move(planned));
    return;
  }
  if (p.replicas == 1 && p.tp == 1 && p.virtual_stages == 1 && p.depth() > 1 && o.split.empty() &&
      p.balance == balance_mode::automatic) {
    std::vector<models::layer_range> split;
    for (int k = 0; k < p.depth(); ++k)
      split.push_back(p.slot(0, k).chunks.at(0));
    rb.split.emplace(step_costs(p, o.batch), split, rebalance_settings{},
                     st.cfg.recent_split_moves);
  }
}

void observe_step(trainer_actor* self, double step_seconds) {
  auto& st = self->state;
  auto& rb = st.rebalance;
  const auto& cur = st.current;
  const auto& g = st.grid;
  const auto step = st.step - 1;
  if (rb.shares) {
    // A replica runs at its slowest shard's pace.
    std::vector<double> compute(static_cast<std::size_t>(g.replicas), 0.0);
    for (int r = 0; r < g.replicas; ++r)
      for (int k = 0; k < g.depth; ++k)
        for (int t = 0; t < g.tp; ++t)
          compute[static_cast<std::size_t>(r)] =
              std::max(compute[static_cast<std::size_t>(r)], cur.compute.at(g.index({r, k, t})));
    const auto old = rb.shares->shares();
    auto d = rb.shares->observe(cur.samples, compute, step_seconds);
    if (!d)
      return;
    for (const auto& loader : st.cfg.train_loaders)
      self->send(loader, reshare_atom::value, d->shares);
    record(self, {{"step", step + 1},
                  {"kind", "shares"},
                  {"why", d->why},
                  {"old", old},
                  {"new", d->shares},
                  {"predicted_gain", d->predicted_gain}});
    return;
  }
  if (rb.split && !rb.split_asked) {
    std::vector<double> compute;
    for (int k = 0; k < g.depth; ++k)
      compute.push_back(cur.compute.at(g.index({0, k, 0})));
    const auto old = rb.split->split();
    auto d = rb.split->observe(compute, step_seconds);
    if (!d)
      return;
    rb.split_asked = true;
    record(self, {{"step", step + 1},
                  {"kind", "split"},
                  {"why", d->why},
                  {"old", split_json(old)},
                  {"new", split_json(d->split)},
                  {"predicted_gain", d->predicted_gain}});
  }
}

} // namespace troupe::actors::training
