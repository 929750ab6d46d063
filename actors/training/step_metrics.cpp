#include "actors/training/step_metrics.hpp"

#include <string>

namespace troupe::actors::training {

namespace {

/// The columns: the per-stage busy fractions follow the fixed ones.
nlohmann::json columns(const trainer_state& st) {
  nlohmann::json c = {"step", "epoch", "loss", "lr", "step_seconds", "samples_per_second"};
  for (int k = 0; k < st.grid.depth; ++k)
    c.push_back("busy_stage" + std::to_string(k));
  return c;
}

/// Stage k's compute over the step's duration, averaged over its replicas
/// and tensor-parallel ranks; null when a shard did not report it.
nlohmann::json busy_fraction(const trainer_state& st, int k, double step_seconds) {
  const auto& g = st.grid;
  double sum = 0;
  for (int r = 0; r < g.replicas; ++r)
    for (int t = 0; t < g.tp; ++t) {
      const auto i = g.index({r, k, t});
      if (i >= st.current.compute.size() || step_seconds <= 0)
        return nullptr;
      sum += st.current.compute[i];
    }
  return sum / double(g.replicas * g.tp) / step_seconds;
}

} // namespace

void record_step_metrics(trainer_state& st, double step_seconds, std::int64_t samples) {
  auto& m = st.totals.step_metrics;
  if (m.empty())
    m = {{"columns", columns(st)}, {"rows", nlohmann::json::array()}, {"stride", 1}};
  const auto step = st.step - 1; // the step just done
  const auto stride = m.at("stride").get<std::int64_t>();
  if (step % stride != 0)
    return;
  const auto& loss = st.current.loss;
  const auto per = loss.tokens > 0 ? loss.tokens : loss.samples;
  nlohmann::json row = {step + 1,
                        st.epoch.index + 1,
                        per > 0 ? nlohmann::json(loss.loss_sum / double(per)) : nlohmann::json(),
                        learning_rate(st, step),
                        step_seconds,
                        step_seconds > 0 ? double(samples) / step_seconds : 0.0};
  for (int k = 0; k < st.grid.depth; ++k)
    row.push_back(busy_fraction(st, k, step_seconds));
  auto& rows = m.at("rows");
  rows.push_back(std::move(row));
  if (rows.size() < max_step_metrics_rows)
    return;
  // Thin out: keep the rows of steps that are multiples of the doubled stride.
  nlohmann::json kept = nlohmann::json::array();
  for (auto& r : rows)
    if ((r.at(0).get<std::int64_t>() - 1) % (2 * stride) == 0)
      kept.push_back(std::move(r));
  rows = std::move(kept);
  m["stride"] = 2 * stride;
}

} // namespace troupe::actors::training
