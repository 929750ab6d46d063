#include "actors/cluster/client_events.hpp"

#include <algorithm>
#include <utility>

namespace troupe::actors {

void tell_client(supervisor_actor* self, job_event_kind kind, nlohmann::json fields) {
  auto& job = self->state.job;
  if (!job.stream_events || !job.client)
    return;
  job_event e{kind, job.id, job_event_now(), std::move(fields)};
  self->send(job.client, job_event_atom::value, to_json(e).dump());
}

void tell_waiting(supervisor_actor* self) {
  const auto& st = self->state;
  if (st.job.phase == job_phase::waiting && ready_nodes(st) < st.cfg.expect_nodes)
    tell_client(self, job_event_kind::waiting,
                {{"ready", ready_nodes(st)}, {"expected", st.cfg.expect_nodes}});
}

bool forward_progress(supervisor_actor* self, const nlohmann::json& p) {
  auto& job = self->state.job;
  if (p.contains("epoch_result")) {
    job.recovery.last_progress = clock_type::now();
    tell_client(self, job_event_kind::epoch, p.at("epoch_result"));
    return true;
  }
  if (!job.stream_events || p.value("evaluating", false))
    return false;
  const auto epoch_step = p.value("epoch_step", std::int64_t{0});
  const auto epoch_steps = p.value("epoch_steps", std::int64_t{0});
  const auto step = p.value("step", std::int64_t{0});
  const bool last = epoch_step >= epoch_steps || step >= p.value("total_steps", std::int64_t{0});
  const auto now = clock_type::now();
  if (!last && job.last_progress_event != clock_type::time_point{} &&
      now - job.last_progress_event < std::chrono::milliseconds(250))
    return false;
  job.last_progress_event = now;
  nlohmann::json f;
  for (const char* k : {"step", "total_steps", "epoch", "epochs", "epoch_step", "epoch_steps",
                        "loss", "lr", "samples_per_second"})
    if (p.contains(k))
      f[k] = p.at(k);
  // The epoch's mean rate, as the local bar shows (one step's rate jumps).
  if (p.contains("epoch_samples_per_second"))
    f["samples_per_second"] = p.at("epoch_samples_per_second");
  f["percent"] = epoch_steps > 0 ? 100.0 * static_cast<double>(std::min(epoch_step, epoch_steps)) /
                                       static_cast<double>(epoch_steps)
                                 : 0.0;
  tell_client(self, job_event_kind::progress, std::move(f));
  return false;
}

} // namespace troupe::actors
