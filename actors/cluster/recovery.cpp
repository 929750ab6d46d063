#include "actors/cluster/recovery.hpp"

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "actors/cluster/client_events.hpp"
#include "actors/protocol/messages.hpp"
#include "actors/training/trainer.hpp"
#include "runtime/error.hpp"
#include "runtime/net/caf_error.hpp"

namespace troupe::actors {

namespace {

/// How long a salvage of the live replicas' state may take.
constexpr std::chrono::seconds salvage_wait{5};
double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

/// Fails the job for good, naming every failure it saw.
void give_up(supervisor_actor* self, const std::string& why) {
  auto& rec = self->state.job.recovery;
  std::vector<std::string> numbered;
  for (std::size_t i = 0; i < rec.all_failures.size(); ++i)
    numbered.push_back(std::to_string(i + 1) + ") " + rec.all_failures[i]);
  abort_job(self, why + "; failures: " + fmt::format("{}", fmt::join(numbered, "; ")));
}

/// The current generation's state owners (layer shards, ps shards) that are
/// lost: failed, or on a node that is gone.
std::vector<caf::actor> lost_state_owners(const supervisor_state& st) {
  const auto& job = st.job;
  std::vector<caf::actor> r;
  for (const auto& [addr, a] : job.actors) {
    if (a.kind != "layer_shard" && a.kind != "ps_shard")
      continue;
    const auto& lost = job.recovery.lost_actors;
    const bool dead = std::find(lost.begin(), lost.end(), addr) != lost.end();
    const bool node_gone = a.node != "local" && a.node != st.cfg.name && !st.nodes.count(a.node);
    if (dead || node_gone)
      r.push_back(a.handle);
  }
  return r;
}

bool trainer_alive(const job_state& job) {
  const auto& lost = job.recovery.lost_actors;
  return job.trainer && std::find(lost.begin(), lost.end(), job.trainer.address()) == lost.end();
}

/// The options of a re-plan with the given degrees: the user's, without what
/// only the first generation may have (an injected fault, a --resume, shares
/// and a split for other degrees).
train_options shrunk(const train_options& requested, int dp, int stages, int tp) {
  auto o = requested;
  o.fault.clear();
  o.resume_dir.clear();
  o.plan = nullptr;
  if (dp != requested.dp)
    o.batch_shares.clear();
  if (stages != requested.stages)
    o.split.clear();
  if (o.slow_replica >= dp)
    o.slow_replica = -1;
  if (o.slow_stage >= stages)
    o.slow_stage = -1;
  o.dp = dp;
  o.stages = stages;
  o.tp = tp;
  o.min_dp = std::min(o.min_dp, dp);
  return o;
}

/// The largest plan that fits the devices now: data parallelism shrinks
/// first (down to --min-dp), then the pipeline's depth, then tensor
/// parallelism. False when none fits.
bool plan_on_devices_left(supervisor_state& st) {
  auto& job = st.job;
  const auto& req = job.requested;
  const auto devices = job_devices(st, req);
  for (int dp = req.dp; dp >= req.min_dp; --dp)
    for (int stages = req.stages; stages >= 1; --stages)
      for (int tp = req.tp; tp >= 1; --tp) {
        auto o = shrunk(req, dp, stages, tp);
        try {
          o.validate();
          auto p = make_plan(o, devices);
          job.opts = std::move(o);
          job.topology = std::move(p);
          return true;
        } catch (const std::exception&) {
        }
      }
  return false;
}

/// The resume checkpoint of the latest complete checkpoint on disk, if it
/// fits the job; nullopt otherwise.
std::optional<runtime::checkpoint> disk_checkpoint(supervisor_state& st) {
  const auto& job = st.job;
  if (job.recovery.checkpoint_step < 0 || job.opts.checkpoint_dir.empty())
    return std::nullopt;
  try {
    auto ck = runtime::read_checkpoint(job.opts.checkpoint_dir);
    check_resume_compatible(ck, job.requested, job.topology, job.inputs->train_samples());
    return ck;
  } catch (const std::exception& e) {
    st.log->warn("job {}: the checkpoint in {} is not usable: {}", job.id, job.opts.checkpoint_dir,
                 e.what());
    return std::nullopt;
  }
}

/// A rebalance's plan, when its devices are all still there.
bool take_next_topology(supervisor_state& st) {
  auto& rec = st.job.recovery;
  if (!rec.next_topology)
    return false;
  auto next = std::move(*rec.next_topology);
  rec.next_topology.reset();
  try {
    st.job.topology = place_saved_plan(std::move(next), job_devices(st, st.job.opts));
    return true;
  } catch (const std::exception& e) {
    st.log->warn("job {}: the rebalanced plan does not fit any more ({}); planning afresh",
                 st.job.id, e.what());
    return false;
  }
}

/// Places the next generation, or waits for nodes when no plan fits.
void replan(supervisor_actor* self) {
  auto& st = self->state;
  auto& job = st.job;
  auto& rec = job.recovery;
  if (!take_next_topology(st) && !plan_on_devices_left(st)) {
    const double waited = seconds_since(rec.waiting_since);
    if (waited >= job.requested.rejoin_wait_s) {
      give_up(self, "job " + std::to_string(job.id) + ": no plan fits the " +
                        std::to_string(job_devices(st, job.requested).size()) +
                        " device(s) left (waited " +
                        std::to_string(static_cast<int>(job.requested.rejoin_wait_s)) +
                        " s for nodes to join)");
      return;
    }
    st.log->warn("job {}: no plan fits the devices left; waiting up to {:.0f} s for nodes to join",
                 job.id, job.requested.rejoin_wait_s - waited);
    self->delayed_send(
        self,
        std::chrono::milliseconds(
            static_cast<std::int64_t>((job.requested.rejoin_wait_s - waited) * 1000) + 1),
        replan_atom::value, job.wire());
    return;
  }
  auto& r = rec.restarts.back();
  r.dp = job.topology.replicas;
  r.stages = job.topology.depth();
  r.tp = job.topology.tp;
  std::optional<runtime::checkpoint> resume;
  if (rec.resume)
    resume = *rec.resume;
  rec.restored = false;
  st.log->info("job {}: generation {} on {} stage(s) x {} replica(s) x tp {}, from {} (step {})",
               job.id, job.generation + 1, r.stages, r.dp, r.tp, to_string(r.source),
               r.restored_step);
  tell_client(self, job_event_kind::recovered,
              {{"generation", job.generation + 1},
               {"stages", r.stages},
               {"replicas", r.dp},
               {"tp", r.tp},
               {"source", to_string(r.source)},
               {"step", r.restored_step}});
  start_generation(self, std::move(resume));
}

/// The generation is torn down; `salvaged` (from the live replicas) or the
/// best saved restore point is chosen, and after the back-off the job is
/// re-planned.
void restore(supervisor_actor* self, std::optional<job_snapshot> salvaged) {
  auto& st = self->state;
  auto& job = st.job;
  auto& rec = job.recovery;
  teardown_generation(self);
  auto& r = rec.restarts.back();
  rec.resume = nullptr;
  r.source = restore_source::initial;
  r.restored_step = 0;
  const auto snap_step = rec.snapshot ? rec.snapshot->step : -1;
  if (salvaged) {
    rec.snapshot = std::move(salvaged);
    r.source = r.planned         ? restore_source::snapshot
               : job.opts.ps > 0 ? restore_source::parameter_servers
                                 : restore_source::replicas;
    rec.resume = rec.snapshot->state;
  } else if (rec.checkpoint_step > snap_step) {
    if (auto ck = disk_checkpoint(st)) {
      r.source = restore_source::checkpoint;
      rec.resume = std::make_shared<const runtime::checkpoint>(std::move(*ck));
    }
  }
  if (!rec.resume && rec.snapshot) {
    r.source = restore_source::snapshot;
    rec.resume = rec.snapshot->state;
  }
  if (rec.resume)
    r.restored_step = rec.resume->trainer_state.value("global_step", std::int64_t{0});
  rec.restored = true;
  rec.waiting_since = clock_type::now();
  // Back-off: at once the first time, then 0.25 s doubling up to 5 s.
  const int k = rec.failed_restarts;
  const auto delay = k <= 1 ? std::chrono::milliseconds(0)
                            : std::min(std::chrono::milliseconds(250 << std::min(k - 2, 5)),
                                       std::chrono::milliseconds(5000));
  if (delay.count() == 0)
    replan(self);
  else
    self->delayed_send(self, delay, replan_atom::value, job.wire());
}

/// Asks the trainer for the state the live replicas hold (no step lost),
/// then restores.
void salvage_then_restore(supervisor_actor* self) {
  auto& st = self->state;
  auto& job = st.job;
  // The live replicas hold the state, or with parameter servers the ps shards.
  const bool live_state = job.opts.ps > 0 || job.topology.replicas > 1;
  if (!live_state || !trainer_alive(job)) {
    restore(self, std::nullopt);
    return;
  }
  const auto wire = job.wire();
  self->request(job.trainer, salvage_wait, salvage_atom::value, lost_state_owners(st))
      .then(
          [self, wire](job_snapshot& s) {
            auto& job = self->state.job;
            if (job.wire() == wire && job.phase == job_phase::recovering)
              restore(self, std::move(s));
          },
          [self, wire](caf::error& err) {
            auto& st = self->state;
            if (st.job.wire() != wire || st.job.phase != job_phase::recovering)
              return;
            st.log->info("job {}: the replicas' state is not usable ({}); restoring a saved one",
                         st.job.id, runtime::describe(self->system(), err));
            restore(self, std::nullopt);
          });
}

/// A re-plan asked for: the trainer stops at a step boundary with a
/// snapshot, and the job is placed again on more devices.
void grow(supervisor_actor* self, const std::string& why) {
  auto& st = self->state;
  auto& job = st.job;
  job.recovery.growing = true;
  const auto wire = job.wire();
  st.log->info("job {}: {}: re-planning at the next step boundary", job.id, why);
  self->request(job.trainer, std::chrono::seconds(60), snapshot_atom::value)
      .then(
          [self, wire, why](job_snapshot& s) {
            auto& job = self->state.job;
            job.recovery.growing = false;
            if (job.wire() != wire || job.phase != job_phase::running)
              return;
            auto& rec = job.recovery;
            restart_record r;
            r.generation = job.generation + 1;
            r.failures = {why};
            r.detected_at = unix_now();
            r.failed_at_step = s.step;
            r.planned = true;
            rec.restarts.push_back(std::move(r));
            rec.detected = clock_type::now();
            job.phase = job_phase::recovering;
            rec.restored = false;
            restore(self, std::move(s));
          },
          [self, wire](caf::error& err) {
            auto& st = self->state;
            st.job.recovery.growing = false;
            st.job.recovery.next_topology.reset();
            if (st.job.wire() == wire)
              st.log->warn("job {}: growing back failed: {}", st.job.id,
                           runtime::describe(self->system(), err));
          });
}

} // namespace

void job_failed(supervisor_actor* self, failure f) {
  auto& st = self->state;
  auto& job = st.job;
  if (job.phase == job_phase::idle || job.phase == job_phase::waiting ||
      job.phase == job_phase::measuring)
    return;
  auto& rec = job.recovery;
  if (f.actor)
    rec.lost_actors.push_back(f.actor);
  if (job.phase == job_phase::recovering) {
    st.log->info("job {}: also: {}", job.id, f.what);
    if (!rec.restarts.empty())
      rec.restarts.back().failures.push_back(f.what);
    rec.all_failures.push_back(f.what);
    return;
  }
  if (job.requested.max_restarts == 0) {
    abort_job(self, f.what);
    return;
  }
  rec.all_failures.push_back(f.what);
  if (rec.failed_restarts >= job.requested.max_restarts) {
    give_up(self, "job " + std::to_string(job.id) + " failed after " +
                      std::to_string(rec.failed_restarts) + " restart(s) (--max-restarts " +
                      std::to_string(job.requested.max_restarts) + ")");
    return;
  }
  ++rec.failed_restarts;
  job.phase = job_phase::recovering;
  rec.restored = false;
  rec.detected = clock_type::now();
  restart_record r;
  r.generation = job.generation + 1;
  r.failures = {f.what};
  r.detected_at = unix_now();
  r.detection_seconds = f.silent_seconds;
  r.failed_at_step = rec.last_step;
  rec.restarts.push_back(std::move(r));
  st.log->error("job {} generation {}: {}; recovering (restart {} of at most {})", job.id,
                job.generation, f.what, rec.failed_restarts, job.requested.max_restarts);
  tell_client(self, job_event_kind::restart,
              {{"generation", job.generation},
               {"what", f.what},
               {"restart", rec.failed_restarts},
               {"max_restarts", job.requested.max_restarts}});
  salvage_then_restore(self);
}

void on_snapshot(supervisor_actor* self, job_snapshot s) {
  auto& rec = self->state.job.recovery;
  if (self->state.job.phase == job_phase::idle)
    return;
  if (!rec.snapshot || s.step >= rec.snapshot->step)
    rec.snapshot = std::move(s);
}

void on_checkpointed(supervisor_actor* self, std::int64_t step) {
  auto& rec = self->state.job.recovery;
  rec.checkpoint_step = std::max(rec.checkpoint_step, step);
}

void on_progress(supervisor_actor* self) {
  self->state.job.recovery.last_progress = clock_type::now();
}

void on_step_done(supervisor_actor* self, std::int64_t step, double seconds) {
  auto& rec = self->state.job.recovery;
  rec.last_progress = clock_type::now();
  rec.last_step = step;
  if (seconds >= 0) {
    rec.step_seconds.push_back(seconds);
    if (rec.step_seconds.size() > 64)
      rec.step_seconds.erase(rec.step_seconds.begin());
  }
  // Every restart whose failed step is reached again (a grow-back may have
  // followed a restart before the job got there).
  for (auto& r : rec.restarts)
    if (!r.seconds_lost && rec.last_step >= r.failed_at_step)
      r.seconds_lost = unix_now() - r.detected_at;
}

void generation_running(supervisor_actor* self) {
  auto& job = self->state.job;
  auto& rec = job.recovery;
  const auto from = rec.restarts.empty() ? 0 : rec.restarts.back().restored_step;
  rec.degrees.push_back(
      {from, job.generation, job.topology.replicas, job.topology.depth(), job.topology.tp});
  rec.last_progress = clock_type::now();
  rec.step_seconds.clear();
  rec.lost_actors.clear();
  rec.last_step = from;
  if (!rec.restarts.empty() && rec.restarts.back().replan_seconds < 0)
    rec.restarts.back().replan_seconds = seconds_since(rec.detected);
}

void on_node_ready(supervisor_actor* self) {
  auto& st = self->state;
  auto& job = st.job;
  if (job.phase == job_phase::recovering && !job.recovery.restarts.empty() &&
      !job.recovery.growing) {
    // A recovery waiting for devices (replan_atom pending) tries now.
    self->send(self, replan_atom::value, job.wire());
    return;
  }
  if (job.phase != job_phase::running || job.recovery.growing || !job.trainer)
    return;
  const auto& req = job.requested;
  const bool shrunk = job.topology.replicas < req.dp || job.topology.depth() < req.stages ||
                      job.topology.tp < req.tp;
  if (!shrunk)
    return;
  // Grow only when the full plan (or more of it) fits now.
  const auto devices = job_devices(st, req);
  const auto needed = static_cast<std::size_t>(
      job.topology.replicas * job.topology.depth() * job.topology.tp + job.opts.ps);
  if (devices.size() <= needed)
    return;
  grow(self, "a node joined (" + std::to_string(devices.size()) + " device(s) now)");
}

nlohmann::json recovery_json(const job_state& job) {
  const auto& rec = job.recovery;
  nlohmann::json restarts = nlohmann::json::array();
  for (const auto& r : rec.restarts)
    restarts.push_back(
        {{"generation", r.generation},
         {"failures", r.failures},
         {"planned", r.planned},
         {"detected_at", r.detected_at},
         {"detection_seconds", r.detection_seconds},
         {"restore_source", to_string(r.source)},
         {"failed_at_step", r.failed_at_step},
         {"restored_step", r.restored_step},
         {"steps_redone", std::max<std::int64_t>(0, r.failed_at_step - r.restored_step)},
         {"replan_seconds", r.replan_seconds},
         {"seconds_lost",
          r.seconds_lost ? nlohmann::json(*r.seconds_lost) : nlohmann::json(nullptr)},
         {"dp", r.dp},
         {"stages", r.stages},
         {"tp", r.tp}});
  nlohmann::json degrees = nlohmann::json::array();
  for (const auto& d : rec.degrees)
    degrees.push_back({{"from_step", d.from_step},
                       {"generation", d.generation},
                       {"dp", d.dp},
                       {"stages", d.stages},
                       {"tp", d.tp}});
  return {
      {"generation", job.generation},
      {"max_restarts", job.requested.max_restarts},
      {"restarts", restarts},
      {"degrees", degrees},
      {"failures", rec.all_failures},
      {"snapshot_step", rec.snapshot ? nlohmann::json(rec.snapshot->step) : nullptr},
      {"checkpoint_step", rec.checkpoint_step >= 0 ? nlohmann::json(rec.checkpoint_step) : nullptr},
      {"last_stall", rec.last_stall}};
}

std::string recovery_summary(const train_options& o) {
  if (o.max_restarts == 0)
    return "recovery: off (--max-restarts 0)";
  std::string snap = o.snapshot_every == 0 ? "no snapshots"
                     : o.snapshot_every < 0
                         ? "snapshots every 50 steps (auto: widened to keep "
                           "their cost under 3%)"
                         : "snapshots every " + std::to_string(o.snapshot_every) + " steps";
  return "recovery: up to " + std::to_string(o.max_restarts) + " restart(s), " + snap +
         ", data parallelism down to " + std::to_string(o.min_dp) + " replica(s)";
}

void replan_with(supervisor_actor* self, plan next, const std::string& why) {
  auto& job = self->state.job;
  if (job.phase != job_phase::running || job.recovery.growing || !job.trainer) {
    self->state.log->info("job {}: not re-planning for {}: the job is {}", job.id, why,
                          job.recovery.growing ? "already re-planning" : to_string(job.phase));
    return;
  }
  job.recovery.next_topology = std::move(next);
  grow(self, why);
}

void on_replan(supervisor_actor* self, std::uint64_t wire) {
  auto& job = self->state.job;
  if (job.wire() == wire && job.phase == job_phase::recovering && job.recovery.restored)
    replan(self);
}

} // namespace troupe::actors
