#include "actors/training/snapshots.hpp"

#include <algorithm>
#include <chrono>
#include <exception>
#include <memory>
#include <optional>
#include <utility>

#include <caf/blocking_actor.hpp>

#include "actors/plan/ps_assignment.hpp"
#include "actors/protocol/messages.hpp"
#include "actors/training/checkpoint.hpp"
#include "actors/training/model_gather.hpp"
#include "runtime/io/checkpoint.hpp"

namespace troupe::actors::training {

namespace {

/// Snapshots every this many steps when the user leaves it to the trainer.
constexpr std::int64_t auto_snapshot_interval = 50;
/// An automatic interval is widened until a snapshot costs at most this
/// share of the steps between two of them.
constexpr double snapshot_budget = 0.03;
/// How long a salvage waits for a live shard's answer.
constexpr std::chrono::seconds salvage_timeout{3};

/// One gather of the model's state in progress: a reply per asked actor.
struct state_gathering {
  std::vector<runtime::named_tensors> params, state;
  std::size_t left = 0;
  std::optional<std::string> error;
  std::function<void(state_gathering&)> done;

  void one_done() {
    if (--left == 0)
      done(*this);
  }
  void failed(std::string why) {
    if (!error)
      error = std::move(why);
    one_done();
  }
};

using gathering_ptr = std::shared_ptr<state_gathering>;

/// Asks each of `shards` (one per slot of a replica, in slot order) for its
/// parameters and optimizer state (salvage_atom: mid-step too), into g.
void ask_shards(trainer_actor* self, const std::vector<caf::actor>& shards, gathering_ptr g,
                std::chrono::milliseconds timeout) {
  for (std::size_t i = 0; i < shards.size(); ++i)
    self->request(shards[i], timeout, actors::salvage_atom::value)
        .then(
            [g, i](runtime::named_tensors& p, runtime::named_tensors& s) {
              g->params[i] = std::move(p);
              g->state[i] = std::move(s);
              g->one_done();
            },
            [self, g](caf::error& err) { g->failed(self->system().render(err)); });
}

/// Asks every ps shard for its pieces of the parameters and the state, into g.
void ask_ps(trainer_actor* self, gathering_ptr g, std::chrono::milliseconds timeout) {
  const auto& ps = self->state.cfg.ps_shards;
  for (std::size_t i = 0; i < ps.size(); ++i) {
    self->request(ps[i], timeout, actors::get_params_atom::value)
        .then(
            [g, i](runtime::named_tensors& p) {
              g->params[i] = std::move(p);
              g->one_done();
            },
            [self, g](caf::error& err) { g->failed(self->system().render(err)); });
    self->request(ps[i], timeout, actors::get_state_atom::value)
        .then(
            [g, i](runtime::named_tensors& s) {
              g->state[i] = std::move(s);
              g->one_done();
            },
            [self, g](caf::error& err) { g->failed(self->system().render(err)); });
  }
}

/// The answers a ps gathering waits for: two per ps shard, and the workers'
/// shapes once (until they are known).
std::size_t ps_answers(const trainer_state& st) {
  return 2 * st.cfg.ps_shards.size() + (st.snap.ps_shapes.empty() ? 1 : 0);
}

/// Asks the ps shards for their pieces (ask_ps) and, the first time, the
/// live `workers` (one per slot) for the whole shapes (their parameters).
void ask_ps_with_shapes(trainer_actor* self, const std::vector<caf::actor>& workers,
                        gathering_ptr g, std::chrono::milliseconds timeout) {
  if (self->state.snap.ps_shapes.empty()) {
    auto shapes = std::make_shared<state_gathering>();
    shapes->params.resize(workers.size());
    shapes->state.resize(workers.size());
    shapes->left = workers.size();
    shapes->done = [self, g](state_gathering& r) {
      for (const auto& part : r.params)
        for (std::size_t i = 0; i < part.names.size(); ++i)
          self->state.snap.ps_shapes[part.names[i]] = part.tensors[i].shape();
      if (r.error)
        g->failed("the workers' shapes: " + *r.error);
      else
        g->one_done();
    };
    ask_shards(self, workers, shapes, timeout);
  }
  ask_ps(self, g, timeout);
}

/// The model from a finished gathering: layer shards' replies (one per slot,
/// in slot order), or the ps shards' pieces with the whole shapes.
model_state assemble(const trainer_state& st, const state_gathering& g, bool from_ps) {
  // Async / ssp parameter servers apply pushes on their own: their shards'
  // step counts differ by design; the first one's goes with the state.
  const bool exact = !independent_workers(st);
  model_state m;
  if (from_ps) {
    const auto& layout = st.cfg.topology.ps_layout;
    m.params = merge({merge_pieces(layout, g.params, st.snap.ps_shapes)});
    m.state = merge({merge_pieces(layout, g.state, st.snap.ps_shapes)});
  } else {
    m.params = whole_tensors(st, g.params);
    m.state = whole_tensors(st, g.state);
  }
  m.steps = exact ? std::to_string(common_steps(g.state)) : meta_value(g.state.front(), "steps");
  return m;
}

/// The epoch's sums as a restore point after `step` steps holds them: when
/// `step` ends an epoch whose end the trainer has not processed, a new epoch.
epoch_state epoch_at(const trainer_state& st, std::int64_t step) {
  auto e = st.epoch;
  if (step != st.step && step % st.steps_per_epoch == 0) {
    e.last_loss = e.mean_loss();
    e.loss_sum = 0;
    e.samples = 0;
    e.tokens = 0;
  }
  return e;
}

/// Gathers the model as it is after `expected` steps (from replica 0's
/// shards, or the ps shards) and hands the snapshot to `done`; nullopt with
/// a reason when a part failed or held another step.
void gather_snapshot(trainer_actor* self,
                     std::function<void(std::optional<job_snapshot>, std::string)> done) {
  auto& st = self->state;
  const bool ps = !st.cfg.ps_shards.empty();
  const auto step = st.step;
  const auto epoch = st.epoch;
  const auto started = clock_type::now();
  auto g = std::make_shared<state_gathering>();
  auto shards = first_replica(st);
  const auto n = ps ? st.cfg.ps_shards.size() : shards.size();
  g->params.resize(n);
  g->state.resize(n);
  g->left = ps ? ps_answers(st) : n;
  g->done = [self, ps, step, epoch, started, done](state_gathering& r) {
    auto& s = self->state;
    if (r.error) {
      done(std::nullopt, *r.error);
      return;
    }
    try {
      auto m = assemble(s, r, ps);
      // Async workers run on their own: the state is of no one step.
      if (!independent_workers(s) && std::stoll(m.steps) != step)
        throw std::runtime_error("its state holds " + m.steps + " steps, not " +
                                 std::to_string(step));
      auto ck =
          std::make_shared<runtime::checkpoint>(make_checkpoint(s, std::move(m), step, epoch));
      s.snap.seconds += seconds_between(started, clock_type::now());
      done(job_snapshot{std::move(ck), step}, {});
    } catch (const std::exception& e) {
      done(std::nullopt, e.what());
    }
  };
  const auto timeout = std::chrono::milliseconds(60000);
  if (ps)
    ask_ps_with_shapes(self, shards, g, timeout);
  else
    ask_shards(self, shards, g, timeout);
}

/// Whether a periodic checkpoint is due at this boundary.
bool checkpoint_due(const trainer_state& st) {
  const auto& o = st.cfg.opts;
  if (o.checkpoint_dir.empty() || st.snap.writing || st.step == st.snap.last_checkpoint_step ||
      st.step == 0)
    return false;
  if (o.checkpoint_every > 0 && st.step % o.checkpoint_every == 0)
    return true;
  return o.checkpoint_seconds > 0 &&
         seconds_between(st.snap.last_checkpoint, clock_type::now()) >= o.checkpoint_seconds;
}

/// An automatic interval after a snapshot that took `seconds`: widened while
/// it costs more than the budget of the steps between two snapshots.
void adapt_interval(trainer_state& st, double seconds) {
  if (!st.snap.automatic || st.snap.interval <= 0 || st.step == st.run_start_step)
    return;
  const double step_seconds =
      st.totals.train_seconds / double(std::max<std::int64_t>(1, st.step - st.run_start_step));
  while (seconds > snapshot_budget * step_seconds * double(st.snap.interval) &&
         st.snap.interval < (std::int64_t{1} << 20))
    st.snap.interval *= 2;
}

} // namespace

void init_snapshots(trainer_state& st) {
  const auto& o = st.cfg.opts;
  st.snap.automatic = o.snapshot_every < 0 && o.max_restarts > 0;
  st.snap.interval = o.snapshot_every >= 0 ? o.snapshot_every
                     : o.max_restarts > 0  ? auto_snapshot_interval
                                           : 0;
  st.snap.last_checkpoint = clock_type::now();
}

bool at_step_boundary(trainer_actor* self) {
  auto& st = self->state;
  if (st.snap.paused)
    return true;
  // Async workers come here after each of their steps: once per global step.
  if (st.step == st.snap.last_boundary && !st.snap.pause)
    return false;
  st.snap.last_boundary = st.step;
  const bool snapshot =
      st.snap.interval > 0 && st.step % st.snap.interval == 0 && !st.snap.in_flight;
  const bool checkpoint = checkpoint_due(st);
  if (st.snap.pause) {
    st.snap.paused = true;
    auto rp = std::move(*st.snap.pause);
    st.snap.pause.reset();
    gather_snapshot(self, [self, rp](std::optional<job_snapshot> s, std::string why) mutable {
      if (s)
        rp.deliver(std::move(*s));
      else
        rp.deliver(caf::make_error(caf::sec::runtime_error, "trainer: snapshot: " + why));
    });
    return true;
  }
  if (!snapshot && !checkpoint)
    return false;
  st.snap.in_flight = true;
  gather_snapshot(self,
                  [self, snapshot, checkpoint](std::optional<job_snapshot> s, std::string why) {
                    auto& st = self->state;
                    st.snap.in_flight = false;
                    if (!s) {
                      ++st.snap.discarded;
                      st.log->warn("snapshot at step {} discarded: {}", st.step, why);
                      return;
                    }
                    ++st.snap.taken;
                    adapt_interval(st, st.snap.seconds / double(st.snap.taken));
                    if (snapshot)
                      self->send(st.cfg.report_to, snapshot_atom::value, *s);
                    if (checkpoint)
                      write_in_background(self, std::move(*s));
                  });
  return false;
}

void pause_for_snapshot(trainer_actor* self, caf::typed_response_promise<job_snapshot> rp) {
  self->state.snap.pause = std::move(rp);
}

void salvage(trainer_actor* self, std::vector<caf::actor> lost,
             caf::typed_response_promise<job_snapshot> rp) {
  auto& st = self->state;
  auto refuse = [&rp](const std::string& why) mutable {
    rp.deliver(caf::make_error(caf::sec::runtime_error, "salvage: " + why));
  };
  auto is_lost = [&lost](const caf::actor& a) {
    return std::find(lost.begin(), lost.end(), a) != lost.end();
  };
  const bool ps = !st.cfg.ps_shards.empty();
  if (!ps && st.grid.replicas < 2) {
    refuse("one replica held the only copy of the state");
    return;
  }
  if (ps && std::any_of(st.cfg.ps_shards.begin(), st.cfg.ps_shards.end(), is_lost)) {
    refuse("a parameter server was lost");
    return;
  }
  // For each slot of a replica, the first replica whose shard is alive.
  std::vector<caf::actor> from;
  for (int k = 0; k < st.grid.depth; ++k)
    for (int t = 0; t < st.grid.tp; ++t) {
      caf::actor found;
      for (int r = 0; r < st.grid.replicas && !found; ++r)
        if (const auto& a = st.cfg.stages[st.grid.index({r, k, t})]; !is_lost(a))
          found = a;
      if (!found) {
        refuse("stage " + std::to_string(k) + " has no live replica");
        return;
      }
      from.push_back(found);
    }
  auto g = std::make_shared<state_gathering>();
  const auto n = ps ? st.cfg.ps_shards.size() : from.size();
  g->params.resize(n);
  g->state.resize(n);
  g->left = ps ? ps_answers(st) : n;
  g->done = [self, rp, ps](state_gathering& r) mutable {
    auto& s = self->state;
    if (r.error) {
      rp.deliver(caf::make_error(caf::sec::runtime_error, "salvage: " + *r.error));
      return;
    }
    try {
      auto m = assemble(s, r, ps);
      // The step in flight may have been applied everywhere (its all-reduce
      // or its sync push completed before the loss), never partly: one
      // update per shard. Async workers have no common step: the trainer's.
      const auto step = independent_workers(s) ? s.step : std::stoll(m.steps);
      if (step != s.step && step != s.step + 1)
        throw std::runtime_error("the live state owners hold " + m.steps + " steps, the trainer " +
                                 std::to_string(s.step));
      auto ck = std::make_shared<runtime::checkpoint>(
          make_checkpoint(s, std::move(m), step, epoch_at(s, step)));
      rp.deliver(job_snapshot{std::move(ck), step});
    } catch (const std::exception& e) {
      rp.deliver(caf::make_error(caf::sec::runtime_error, std::string{"salvage: "} + e.what()));
    }
  };
  if (ps)
    ask_ps_with_shapes(self, from, g, salvage_timeout);
  else
    ask_shards(self, from, g, salvage_timeout);
}

void write_in_background(trainer_actor* self, job_snapshot snap) {
  auto& st = self->state;
  st.snap.writing = true;
  auto dir = st.cfg.opts.checkpoint_dir;
  auto me = caf::actor_cast<caf::actor>(self);
  // A blocking actor of its own: the actor system waits for it at exit, so a
  // started write is never cut off by a normal shutdown. (Its inputs go as
  // spawn arguments: CAF 0.17 dereferences a null argument tuple for a
  // function actor spawned without any, which UBSan reports.)
  self->system().spawn(
      [](caf::blocking_actor* writer, const std::string& to, const job_snapshot& s,
         const caf::actor& trainer) {
        std::string error;
        try {
          runtime::write_checkpoint(to, *s.state);
        } catch (const std::exception& e) {
          error = e.what();
        }
        writer->send(trainer, checkpointed_atom::value, s.step, error);
      },
      std::move(dir), std::move(snap), me);
}

void on_checkpointed(trainer_actor* self, std::int64_t step, const std::string& error) {
  auto& st = self->state;
  st.snap.writing = false;
  if (!error.empty()) {
    fail(self, "writing the checkpoint of step " + std::to_string(step) + ": " + error);
    return;
  }
  st.log->debug("checkpoint of step {} written in the background", step);
  st.snap.last_checkpoint_step = std::max(st.snap.last_checkpoint_step, step);
  st.snap.last_checkpoint = clock_type::now();
  self->send(st.cfg.report_to, checkpointed_atom::value, step);
  if (auto then = std::move(st.snap.after_write)) {
    st.snap.after_write = nullptr;
    then();
  }
}

nlohmann::json trainer_doing(const trainer_state& st) {
  nlohmann::json j{{"actor", "trainer"}, {"step", st.step}};
  const auto& cur = st.current;
  if (st.snap.paused) {
    j["action"] = "paused for a re-plan";
    return j;
  }
  if (cur.batches_pending > 0) {
    j["action"] = "waiting for the data loaders";
    return j;
  }
  nlohmann::json missing = nlohmann::json::array();
  for (std::size_t i = 0; i < cur.reported.size(); ++i)
    if (!cur.reported[i])
      missing.push_back(st.grid.name(st.grid.at(i)));
  j["action"] = cur.step < 0 ? "evaluating" : "training step " + std::to_string(cur.step);
  j["waits_for"] = missing;
  return j;
}

} // namespace troupe::actors::training
