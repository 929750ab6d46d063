#include "actors/training/trainer.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>
#include <unistd.h>

#include "actors/pipeline/data_loader.hpp"
#include "actors/training/job_trace.hpp"
#include "kernels/cpu/gemm.hpp"
#include "models/train/lr_schedule.hpp"
#include "models/train/sequence_loss.hpp"
#include "models/tensor_parallel.hpp"
#include "runtime/build_info.hpp"
#include "runtime/error.hpp"
#include "runtime/io/file_util.hpp"
#include "runtime/log.hpp"
#include "runtime/net/messages.hpp"
#include "runtime/telemetry/trace_recorder.hpp"
#include "runtime/net/transport/courier.hpp"

namespace troupe::actors {

namespace {

using clock_type = std::chrono::steady_clock;

double seconds_between(clock_type::time_point a, clock_type::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

/// The leading layer index of a parameter or state name ("12.weight.exp_avg" -> 12).
std::optional<std::size_t> layer_of(const std::string& name) {
  std::size_t v = 0, i = 0;
  for (; i < name.size() && name[i] >= '0' && name[i] <= '9'; ++i)
    v = v * 10 + static_cast<std::size_t>(name[i] - '0');
  if (i == 0 || i >= name.size() || name[i] != '.')
    return std::nullopt;
  return v;
}

/// The entries of `all` that belong to the layers of `chunks` (a stage's ranges).
runtime::named_tensors select_layers(const runtime::named_tensor_list& all,
                                     const std::vector<models::layer_range>& chunks) {
  runtime::named_tensors r;
  for (const auto& [name, t] : all) {
    auto l = layer_of(name);
    if (l && std::any_of(chunks.begin(), chunks.end(), [&](const models::layer_range& c) {
          return *l >= c.begin && *l < c.end;
        })) {
      r.names.push_back(name);
      r.tensors.push_back(t);
    }
  }
  return r;
}

/// A progress line per epoch: a bar on a terminal, a line per quarter otherwise.
class progress_bar {
public:
  void start(int epoch, int epochs, std::int64_t steps) {
    epoch_ = epoch;
    epochs_ = epochs;
    steps_ = steps;
    last_quarter_ = -1;
    last_draw_ = {};
  }
  void update(std::int64_t done, double samples_per_s, double loss, bool force = false) {
    auto now = clock_type::now();
    if (tty_) {
      if (!force && seconds_between(last_draw_, now) < 0.1)
        return;
      last_draw_ = now;
      int width = 30;
      int filled = steps_ ? static_cast<int>(width * done / steps_) : width;
      std::string bar(static_cast<std::size_t>(filled), '#');
      bar.resize(static_cast<std::size_t>(width), '.');
      std::fprintf(stderr, "\repoch %d/%d [%s] %lld/%lld  %.0f samples/s  loss %.4f ", epoch_,
                   epochs_, bar.c_str(), static_cast<long long>(done),
                   static_cast<long long>(steps_), samples_per_s, loss);
      if (force)
        std::fprintf(stderr, "\n");
    } else {
      int quarter = steps_ ? static_cast<int>(4 * done / steps_) : 4;
      if (quarter == last_quarter_ && !force)
        return;
      last_quarter_ = quarter;
      std::fprintf(stderr, "epoch %d/%d %lld/%lld steps  %.0f samples/s  loss %.4f\n", epoch_,
                   epochs_, static_cast<long long>(done), static_cast<long long>(steps_),
                   samples_per_s, loss);
    }
    std::fflush(stderr);
  }

private:
  bool tty_ = isatty(2) != 0;
  int epoch_ = 0, epochs_ = 0, last_quarter_ = -1;
  std::int64_t steps_ = 0;
  clock_type::time_point last_draw_;
};

/// Async / ssp: where one worker is. Its steps are its own (consecutive ids
/// for its pushes); each runs one part of a global batch.
struct worker_progress {
  std::int64_t next = 0; ///< the step it runs next (or now, when running)
  bool running = false;
  int pending = 0;       ///< reports of its running step still missing
  std::int64_t part = 0; ///< the part it runs: share part % W of global batch part / W
};

/// A global batch whose parts (one per replica's share) are being trained:
/// how many are done, and their losses.
struct step_part {
  int done = 0;
  runtime::stage_report loss;
};

struct trainer_state {
  trainer_config cfg;
  std::shared_ptr<spdlog::logger> log = runtime::logger("trainer");
  std::int64_t steps_per_epoch = 0;
  std::int64_t total_steps = 0;
  std::int64_t step = 0; ///< global index of the next training step
  std::int64_t run_start_step = 0;
  bool language_model = false; ///< losses per token, evaluation in bits per character
  std::optional<models::lr_schedule> schedule; ///< none: every step at opts.lr
  // Accumulators of the current epoch (carried across a resume). Mean losses
  // are per prediction: epoch_tokens equals epoch_samples for a classifier.
  double epoch_loss_sum = 0;
  std::int64_t epoch_samples = 0;
  std::int64_t epoch_tokens = 0;
  double last_epoch_loss = -1;
  int depth = 1;    ///< stages per replica
  int replicas = 1; ///< data-parallel replicas
  int tp = 1;       ///< tensor-parallel shards per stage
  /// tp > 1: how each parameter is split across a stage's shards.
  std::map<std::string, std::vector<models::tp_param_split>> tp_layout;
  // The step in flight.
  std::vector<runtime::batch_msg> batches; ///< each replica's part, as they arrive
  std::size_t batches_pending = 0;
  std::vector<std::optional<std::uint64_t>> digests; ///< per shard, --check-replicas
  int reports_pending = 0;
  /// Async / ssp parameter servers: each worker (replica) runs its own steps.
  std::vector<worker_progress> workers;
  std::int64_t next_part = 0;                   ///< parts handed out so far
  std::map<std::int64_t, step_part> step_parts; ///< global steps some parts are done of
  std::int64_t current_epoch = 0;
  std::int64_t current_index = 0;
  runtime::stage_report loss_report;
  clock_type::time_point t_step;
  // Clipping (opts.clip_norm): the stages' sums of squares of the step in
  // flight, and the last step's global norm before clipping.
  std::vector<std::optional<double>> grad_sumsq;
  std::size_t sumsq_pending = 0;
  double grad_norm = -1;
  std::int64_t replica_checks = 0;     ///< steps whose replicas were found identical
  std::int64_t digest_comparisons = 0; ///< digest pairs compared (replica r vs 0, per shard)
  // Evaluation.
  bool evaluating = false;
  std::int64_t eval_batches_left = 0;
  std::int64_t eval_counter = 0;
  double eval_loss_sum = 0;
  std::int64_t eval_correct = 0;
  std::int64_t eval_samples = 0;
  std::int64_t eval_tokens = 0;
  double test_accuracy = -1;
  double test_loss = -1;
  double bits_per_char = -1;
  std::function<void()> after_eval;
  // The whole run.
  clock_type::time_point t_start = clock_type::now();
  clock_type::time_point t_epoch;
  double train_seconds = 0;
  std::int64_t run_samples = 0;
  std::int64_t epoch_run_samples = 0;
  double compute_seconds = 0;
  // Steps of this run after opts.timing_warmup (benchmarks): their summed
  // durations and the device compute time the stages reported for them.
  std::int64_t timed_steps = 0;
  double timed_seconds = 0;
  double timed_compute_seconds = 0;
  nlohmann::json epochs = nlohmann::json::array();
  std::vector<runtime::stage_report> stage_totals; ///< per stage, training steps summed
  progress_bar progress;
  // Parameter servers: their counters, gathered at the end.
  bool ps_stats_gathered = false;
  nlohmann::json ps_report = nlohmann::json::array();
  runtime::trace_recorder trace; ///< its own track (--trace)
  bool trace_written = false;
  static inline const char* name = "trainer";
};

using trainer_actor = caf::stateful_actor<trainer_state>;

void start_step(trainer_actor* self);
void step_completed(trainer_actor* self);
void worker_step_done(trainer_actor* self, int replica);
void run_worker(trainer_actor* self, int replica);
void sync_replicas(trainer_actor* self);
void finish(trainer_actor* self);
void send_progress(trainer_actor* self, double step_seconds, std::int64_t samples);

void fail(trainer_actor* self, const std::string& what) {
  self->quit(caf::make_error(caf::sec::runtime_error, "trainer: " + what));
}

/// Async and ssp parameter servers: the workers run on their own, a fast one
/// ahead of a slow one as far as the ps shards let it; the trainer only holds
/// them at the epoch's end.
bool independent_workers(const trainer_state& st) {
  return !st.cfg.ps_shards.empty() && st.cfg.topology.ps_mode != ps_mode::sync;
}

/// Index into cfg.stages of tensor-parallel rank t of stage k of replica r.
std::size_t shard_index(const trainer_state& st, int r, int k, int t = 0) {
  return static_cast<std::size_t>((r * st.depth + k) * st.tp + t);
}

/// The shards of replica 0: its pipeline in stage order, each stage's
/// tensor-parallel ranks in order (checkpoints, the final parameters and
/// evaluation use them; the replicas are identical).
std::vector<caf::actor> first_replica(const trainer_state& st) {
  return {st.cfg.stages.begin(), st.cfg.stages.begin() + st.depth * st.tp};
}

/// Sends `xs` to every actor of `to`; calls `done` with the replies in that
/// order. The first error fails the trainer (and so the job).
template <class Reply, class... Ts>
void gather(trainer_actor* self, std::vector<caf::actor> to,
            std::function<void(std::vector<Reply>)> done, Ts... xs) {
  auto n = to.size();
  struct pending {
    std::vector<Reply> replies;
    std::size_t left;
  };
  auto acc = std::make_shared<pending>(pending{std::vector<Reply>(n), n});
  for (std::size_t i = 0; i < n; ++i)
    self->request(to[i], caf::infinite, xs...)
        .then(
            [acc, i, done](Reply& r) {
              acc->replies[i] = std::move(r);
              if (--acc->left == 0)
                done(std::move(acc->replies));
            },
            [self](caf::error& err) {
              fail(self, "stage request failed: " + self->system().render(err));
            });
}

runtime::named_tensor_list merge(const std::vector<runtime::named_tensors>& parts) {
  runtime::named_tensor_list r;
  for (const auto& p : parts)
    for (std::size_t i = 0; i < p.names.size(); ++i)
      r.emplace_back(p.names[i], p.tensors[i]);
  return r;
}

runtime::named_tensors to_named(const runtime::named_tensor_list& list) {
  runtime::named_tensors r;
  for (const auto& [n, t] : list) {
    r.names.push_back(n);
    r.tensors.push_back(t);
  }
  return r;
}

/// The learning rate of training step `step`.
float learning_rate(const trainer_state& st, std::int64_t step) {
  return st.schedule ? st.schedule->lr_at(step) : st.cfg.opts.lr;
}

/// Starts a step on replica `replica`'s pipeline with its part of the batch.
void send_step(trainer_actor* self, int replica, runtime::batch_msg& b, std::int64_t step,
               bool training, std::int64_t schedule_step = -1) {
  auto& st = self->state;
  auto parts = static_cast<std::int32_t>(b.inputs.size());
  // The learning rate follows the run's global steps (an async worker's own
  // step ids run ahead of them or behind).
  const auto lr_step = schedule_step >= 0 ? schedule_step : step;
  runtime::step_msg m{step, parts, b.size, training ? learning_rate(st, lr_step) : st.cfg.opts.lr,
                      training};
  for (int k = 0; k < st.depth; ++k)
    for (int t = 0; t < st.tp; ++t)
      self->send(st.cfg.stages[shard_index(st, replica, k, t)], m);
  // Inputs go to chunk 0 of the first stage, labels to the last stage, whose
  // last chunk is the last virtual stage (it owns the loss) with or without
  // interleaving; every tensor-parallel rank of those stages gets them (the
  // tensors are shared, not copied, in process).
  for (int t = 0; t < st.tp; ++t) {
    const auto& first = st.cfg.stages[shard_index(st, replica, 0, t)];
    const auto& last = st.cfg.stages[shard_index(st, replica, st.depth - 1, t)];
    const bool final = t + 1 == st.tp;
    for (std::int32_t i = 0; i < parts; ++i) {
      auto k = static_cast<std::size_t>(i);
      self->send(last, runtime::labels_msg{step, i, final ? std::move(b.labels[k]) : b.labels[k]});
      runtime::transport::deliver(
          st.cfg.courier, first,
          runtime::activation_msg{step, i, b.offsets[k], training,
                                  final ? std::move(b.inputs[k]) : b.inputs[k]});
    }
  }
}

/// Starts a step on every replica (evaluation: on replica 0 only).
void send_steps(trainer_actor* self, std::vector<runtime::batch_msg>& parts, std::int64_t step,
                bool training) {
  auto& st = self->state;
  if (training && st.cfg.opts.clip_norm > 0) {
    st.grad_sumsq.assign(st.cfg.stages.size(), std::nullopt);
    st.sumsq_pending = st.cfg.stages.size();
  }
  st.digests.assign(st.cfg.stages.size(), std::nullopt);
  for (std::size_t r = 0; r < parts.size(); ++r)
    send_step(self, static_cast<int>(r), parts[r], step, training);
  st.reports_pending = static_cast<int>(parts.size()) * st.depth * st.tp;
  st.loss_report = {};
}

// -- checkpoints ---------------------------------------------------------------

nlohmann::json trainer_state_json(const trainer_state& st) {
  return {{"global_step", st.step},
          {"epoch", st.step / st.steps_per_epoch},
          {"batch_index", st.step % st.steps_per_epoch},
          {"steps_per_epoch", st.steps_per_epoch},
          {"epoch_loss_sum", st.epoch_loss_sum},
          {"epoch_samples", st.epoch_samples},
          {"epoch_tokens", st.epoch_tokens},
          {"last_epoch_loss", st.last_epoch_loss}};
}

/// Replica 0's parameters (or optimizer state) as whole tensors, in stage
/// order: each stage's tensor-parallel slices merged (models::tp_merge).
runtime::named_tensor_list whole_tensors(const trainer_state& st,
                                         const std::vector<runtime::named_tensors>& replies) {
  if (st.tp == 1)
    return merge(replies);
  runtime::named_tensor_list r;
  for (int k = 0; k < st.depth; ++k) {
    std::vector<models::named_tensors> parts;
    for (int t = 0; t < st.tp; ++t)
      parts.push_back(merge({replies.at(static_cast<std::size_t>(k * st.tp + t))}));
    for (auto& nt : models::tp_merge(st.tp_layout, parts))
      r.push_back(std::move(nt));
  }
  return r;
}

/// What a checkpoint holds of the model: whole parameters, optimizer state
/// and the optimizer's step count.
struct model_state {
  runtime::named_tensor_list params, state;
  std::string steps = "0";
};

/// The value of metadata `key` in `t`, or empty.
std::string meta_value(const runtime::named_tensors& t, const std::string& key) {
  for (std::size_t i = 0; i < t.meta_keys.size() && i < t.meta_values.size(); ++i)
    if (t.meta_keys[i] == key)
      return t.meta_values[i];
  return {};
}

/// The model's parameters (and with `with_state` the optimizer state) as
/// whole tensors: from replica 0's layer shards (tensor-parallel slices
/// merged), or with parameter servers from the ps shards, which hold both
/// (the workers only tell the shapes; with async workers replica 0's last
/// pull may predate other workers' later pushes).
void collect_model(trainer_actor* self, bool with_state, std::function<void(model_state)> done) {
  gather<runtime::named_tensors>(
      self, first_replica(self->state),
      [self, with_state, done](std::vector<runtime::named_tensors> params) {
        auto& st = self->state;
        if (st.cfg.ps_shards.empty() && !with_state) {
          model_state m;
          try {
            m.params = whole_tensors(st, params);
          } catch (const std::exception& e) {
            fail(self, std::string{"gathering the parameters: "} + e.what());
            return;
          }
          done(std::move(m));
          return;
        }
        if (st.cfg.ps_shards.empty()) {
          gather<runtime::named_tensors>(
              self, first_replica(st),
              [self, done, params](std::vector<runtime::named_tensors> states) {
                model_state m;
                try {
                  m.params = whole_tensors(self->state, params);
                  m.state = whole_tensors(self->state, states);
                } catch (const std::exception& e) {
                  fail(self, std::string{"checkpoint: "} + e.what());
                  return;
                }
                if (!states.empty())
                  if (auto v = meta_value(states[0], "steps"); !v.empty())
                    m.steps = v;
                done(std::move(m));
              },
              runtime::get_state_atom::value);
          return;
        }
        std::map<std::string, runtime::shape_t> shapes;
        for (const auto& part : params)
          for (std::size_t i = 0; i < part.names.size(); ++i)
            shapes[part.names[i]] = part.tensors[i].shape();
        gather<runtime::named_tensors>(
            self, st.cfg.ps_shards,
            [self, with_state, done, shapes](std::vector<runtime::named_tensors> ps_params) {
              if (!with_state) {
                model_state m;
                try {
                  m.params =
                      merge({merge_pieces(self->state.cfg.topology.ps_layout, ps_params, shapes)});
                } catch (const std::exception& e) {
                  fail(self,
                       std::string{"gathering the parameter servers' parameters: "} + e.what());
                  return;
                }
                done(std::move(m));
                return;
              }
              gather<runtime::named_tensors>(
                  self, self->state.cfg.ps_shards,
                  [self, done, shapes, ps_params](std::vector<runtime::named_tensors> ps_states) {
                    const auto& layout = self->state.cfg.topology.ps_layout;
                    model_state m;
                    try {
                      m.params = merge({merge_pieces(layout, ps_params, shapes)});
                      m.state = merge({merge_pieces(layout, ps_states, shapes)});
                    } catch (const std::exception& e) {
                      fail(self, std::string{"checkpoint: "} + e.what());
                      return;
                    }
                    // Every stage of every shard has taken as many optimizer
                    // steps (one per step in sync mode, one per push otherwise).
                    auto steps = meta_value(ps_states.front(), "steps");
                    for (const auto& s : ps_states)
                      if (meta_value(s, "steps") != steps || steps.empty()) {
                        fail(self, "checkpoint: the parameter servers' optimizers disagree on "
                                   "their step count");
                        return;
                      }
                    m.steps = steps;
                    done(std::move(m));
                  },
                  runtime::get_state_atom::value);
            },
            runtime::get_params_atom::value);
      },
      runtime::get_params_atom::value);
}

void write_checkpoint(trainer_actor* self, std::function<void()> then) {
  collect_model(self, true, [self, then](model_state m) {
    auto& st = self->state;
    runtime::checkpoint ck;
    ck.params = std::move(m.params);
    ck.optimizer_state = std::move(m.state);
    ck.optimizer_meta["type"] = st.cfg.opts.optimizer;
    ck.optimizer_meta["steps"] = m.steps;
    ck.trainer_state = trainer_state_json(st);
    ck.rng = {{"seed", st.cfg.opts.seed},
              {"kind", "counter-based (seed, key, counter); no hidden state"},
              {"streams",
               {"init: hash(parameter name)", "shuffle: hash(\"shuffle\") ^ epoch",
                "dropout: (layer, step, sample)"}}};
    ck.data_loader = {{"epoch", st.step / st.steps_per_epoch},
                      {"batch_index", st.step % st.steps_per_epoch},
                      {"batch", st.cfg.opts.batch},
                      {"shuffle", true},
                      {"seed", st.cfg.opts.seed},
                      {"samples", st.cfg.train_samples}};
    ck.model = st.cfg.topology.model.to_json();
    ck.config = to_json(st.cfg.opts);
    try {
      runtime::write_checkpoint(st.cfg.opts.checkpoint_dir, ck);
    } catch (const std::exception& e) {
      fail(self, e.what());
      return;
    }
    st.log->debug("checkpoint at step {} written to {}", st.step, st.cfg.opts.checkpoint_dir);
    then();
  });
}

/// Loads a checkpoint into the stages and the loader, then starts training.
void resume(trainer_actor* self) {
  auto& st = self->state;
  const auto& ck = *st.cfg.resume;
  // Compatibility was checked by the supervisor before anything was spawned
  // (check_resume_compatible); here the state is only loaded.
  try {
    const auto& ts = ck.trainer_state;
    st.step = ts.at("global_step").get<std::int64_t>();
    st.epoch_loss_sum = ts.at("epoch_loss_sum").get<double>();
    st.epoch_samples = ts.at("epoch_samples").get<std::int64_t>();
    // Checkpoints from before language models counted samples only.
    st.epoch_tokens = ts.value("epoch_tokens", st.epoch_samples);
    st.last_epoch_loss = ts.at("last_epoch_loss").get<double>();
  } catch (const nlohmann::json::exception& e) {
    fail(self, std::string{"checkpoint: "} + e.what());
    return;
  }
  st.run_start_step = st.step;
  for (auto& w : st.workers) // async / ssp workers go on from here
    w.next = st.step;
  st.next_part = st.step * st.replicas;
  const bool ps = !st.cfg.ps_shards.empty();
  // With parameter servers the workers take the parameters only; the ps
  // shards take their pieces of the parameters and the optimizer state.
  auto left =
      std::make_shared<std::size_t>((ps ? 1 : 2) * st.cfg.stages.size() +
                                    2 * st.cfg.ps_shards.size() + st.cfg.train_loaders.size());
  auto one_done = [self, left](bool) {
    if (--*left == 0)
      sync_replicas(self);
  };
  auto on_error = [self](caf::error& err) {
    fail(self, "--resume: " + self->system().render(err));
  };
  for (std::size_t i = 0; i < st.cfg.stages.size(); ++i) {
    const auto& chunks = st.cfg.topology.stages[i].chunks;
    auto params = select_layers(ck.params, chunks);
    auto state = select_layers(ck.optimizer_state, chunks);
    if (st.tp > 1) { // this shard's slices
      const int t = st.cfg.topology.stages[i].tp_rank;
      try {
        params = to_named(models::tp_slice(st.tp_layout, t, merge({params})));
        state = to_named(models::tp_slice(st.tp_layout, t, merge({state})));
      } catch (const std::exception& e) {
        fail(self, std::string{"--resume: "} + e.what());
        return;
      }
    }
    auto steps = ck.optimizer_meta.count("steps") ? ck.optimizer_meta.at("steps") : "0";
    state.meta_keys = {"steps"};
    state.meta_values = {steps};
    self->request(st.cfg.stages[i], caf::infinite, runtime::set_params_atom::value, params)
        .then(one_done, on_error);
    if (!ps)
      self->request(st.cfg.stages[i], caf::infinite, runtime::set_state_atom::value, state)
          .then(one_done, on_error);
  }
  for (std::size_t i = 0; i < st.cfg.ps_shards.size(); ++i) {
    runtime::named_tensors params, state;
    try {
      const auto& layout = st.cfg.topology.ps_layout;
      params = split_pieces(layout, static_cast<int>(i), to_named(ck.params));
      auto full_state = to_named(ck.optimizer_state);
      full_state.meta_keys = {"steps"};
      full_state.meta_values = {ck.optimizer_meta.count("steps") ? ck.optimizer_meta.at("steps")
                                                                 : "0"};
      state = split_pieces(layout, static_cast<int>(i), full_state);
    } catch (const std::exception& e) {
      fail(self, std::string{"--resume: "} + e.what());
      return;
    }
    self->request(st.cfg.ps_shards[i], caf::infinite, runtime::set_params_atom::value, params)
        .then(one_done, on_error);
    self->request(st.cfg.ps_shards[i], caf::infinite, runtime::set_state_atom::value, state)
        .then(one_done, on_error);
  }
  for (const auto& loader : st.cfg.train_loaders)
    self->request(loader, caf::infinite, runtime::seek_atom::value, st.step / st.steps_per_epoch,
                  st.step % st.steps_per_epoch)
        .then(one_done, on_error);
}

/// Data parallelism: every replica takes replica 0's parameters before the
/// first step (a broadcast per stage), then training starts.
void sync_replicas(trainer_actor* self) {
  auto& st = self->state;
  if (st.replicas == 1) {
    start_step(self);
    return;
  }
  gather<bool>(
      self, st.cfg.stages, [self](std::vector<bool>) { start_step(self); },
      runtime::sync_params_atom::value);
}

// -- evaluation ----------------------------------------------------------------

void eval_next(trainer_actor* self) {
  auto& st = self->state;
  if (st.eval_batches_left == 0) {
    st.evaluating = false;
    st.test_loss = st.eval_tokens ? st.eval_loss_sum / double(st.eval_tokens) : 0;
    if (st.language_model)
      st.bits_per_char = st.test_loss / std::log(2.0);
    else
      st.test_accuracy = st.eval_samples ? double(st.eval_correct) / double(st.eval_samples) : 0;
    auto k = std::move(st.after_eval);
    k();
    return;
  }
  self->request(st.cfg.test_loader, caf::infinite, runtime::next_batch_atom::value)
      .then([self](runtime::batch_msg& b) {
        // Evaluation steps use negative ids so they never collide with training
        // steps. Replica 0 evaluates alone (the replicas are identical).
        std::vector<runtime::batch_msg> parts{std::move(b)};
        send_steps(self, parts, -(++self->state.eval_counter), false);
      });
}

void start_eval(trainer_actor* self, std::function<void()> then) {
  auto& st = self->state;
  st.evaluating = true;
  st.eval_batches_left = batches_per_epoch(st.cfg.test_samples, st.cfg.test_batch);
  st.eval_correct = 0;
  st.eval_samples = 0;
  st.eval_tokens = 0;
  st.eval_loss_sum = 0;
  st.after_eval = std::move(then);
  eval_next(self);
}

// -- training ------------------------------------------------------------------

void start_step(trainer_actor* self) {
  auto& st = self->state;
  if (st.step >= st.total_steps) {
    finish(self);
    return;
  }
  if (independent_workers(st)) {
    // The workers drive themselves up to the epoch's end; a global step is
    // done once all its parts are, whichever workers ran them.
    if (auto it = st.step_parts.find(st.step);
        it != st.step_parts.end() && it->second.done == st.replicas) {
      st.loss_report = it->second.loss;
      st.step_parts.erase(it);
      st.current_epoch = st.step / st.steps_per_epoch;
      st.current_index = st.step % st.steps_per_epoch;
      step_completed(self);
      return;
    }
    const bool idle = std::none_of(st.workers.begin(), st.workers.end(),
                                   [](const worker_progress& w) { return w.running; });
    if (idle) {
      st.t_step = clock_type::now();
      if (st.step % st.steps_per_epoch == 0 || st.epoch_run_samples == 0) {
        st.t_epoch = clock_type::now();
        st.progress.start(static_cast<int>(st.step / st.steps_per_epoch + 1), st.cfg.opts.epochs,
                          st.steps_per_epoch);
      }
    }
    for (int r = 0; r < st.replicas; ++r)
      run_worker(self, r);
    return;
  }
  st.t_step = clock_type::now();
  // Each replica's loader prepares that replica's part of the batch.
  st.batches.assign(st.cfg.train_loaders.size(), {});
  st.batches_pending = st.cfg.train_loaders.size();
  for (std::size_t r = 0; r < st.cfg.train_loaders.size(); ++r)
    self->request(st.cfg.train_loaders[r], caf::infinite, runtime::next_batch_atom::value)
        .then([self, r](runtime::batch_msg& b) {
          auto& s = self->state;
          s.batches[r] = std::move(b);
          if (--s.batches_pending > 0)
            return;
          const auto& first = s.batches.front();
          for (const auto& other : s.batches)
            if (other.epoch != first.epoch || other.index != first.index) {
              fail(self, "replica loaders out of step: batch " + std::to_string(other.index) +
                             " of epoch " + std::to_string(other.epoch) + " next to batch " +
                             std::to_string(first.index) + " of epoch " +
                             std::to_string(first.epoch));
              return;
            }
          s.trace.complete_until_now("wait batch", "wait", s.t_step, {{"step", s.step}});
          s.current_epoch = first.epoch;
          s.current_index = first.index;
          if (first.index == 0 || s.epoch_run_samples == 0) {
            s.t_epoch = clock_type::now();
            s.progress.start(static_cast<int>(first.epoch + 1), s.cfg.opts.epochs,
                             s.steps_per_epoch);
          }
          send_steps(self, s.batches, s.step, true);
        });
}

/// Async / ssp: worker `replica`, unless it is running a step, takes the
/// next part of the epoch's batches, part p being share p % W of global
/// batch p / W (from that share's loader). Async workers take whichever part
/// is next: a fast worker trains more parts than a slow one, as with
/// TensorFlow's asynchronous workers, while every sample is still trained
/// once per epoch. Ssp workers keep their own share of every global batch:
/// a worker whose pull the staleness bound holds back must be able to count
/// on the slower workers' pushes, which with a shared queue could run out at
/// an epoch's end (the fast one holding more than K parts more than a slow
/// one would wait forever); with fixed shares every worker runs every global
/// step, so the bound always clears. The epoch's end is a barrier:
/// evaluation and checkpoints see every worker's updates of the epoch.
void run_worker(trainer_actor* self, int replica) {
  auto& st = self->state;
  auto& w = st.workers[static_cast<std::size_t>(replica)];
  const auto epoch_end =
      std::min(st.total_steps, (st.step / st.steps_per_epoch + 1) * st.steps_per_epoch);
  if (w.running)
    return;
  if (st.cfg.topology.ps_mode == ps_mode::ssp) {
    if (w.next >= epoch_end)
      return;
    w.part = w.next * st.replicas + replica;
  } else {
    if (st.next_part >= epoch_end * st.replicas)
      return;
    w.part = st.next_part++;
  }
  w.running = true;
  const auto loader = static_cast<std::size_t>(w.part % st.replicas);
  self->request(st.cfg.train_loaders[loader], caf::infinite, runtime::next_batch_atom::value)
      .then([self, replica](runtime::batch_msg& b) {
        auto& s = self->state;
        auto& wk = s.workers[static_cast<std::size_t>(replica)];
        const auto global_step = wk.part / s.replicas;
        if (b.epoch * s.steps_per_epoch + b.index != global_step) {
          fail(self, "loader " + std::to_string(wk.part % s.replicas) + " is out of step: batch " +
                         std::to_string(b.index) + " of epoch " + std::to_string(b.epoch) +
                         " for step " + std::to_string(global_step));
          return;
        }
        wk.pending = s.depth * s.tp;
        send_step(self, replica, b, wk.next, true, global_step);
      });
}

void epoch_done(trainer_actor* self) {
  auto& st = self->state;
  st.last_epoch_loss = st.epoch_tokens ? st.epoch_loss_sum / double(st.epoch_tokens) : 0;
  auto next = [self] {
    auto& s = self->state;
    s.epochs.push_back({{"epoch", s.current_epoch + 1},
                        {"train_loss", s.last_epoch_loss},
                        {"test_accuracy", s.test_accuracy},
                        {"test_loss", s.test_loss}});
    if (s.language_model) {
      s.epochs.back()["test_accuracy"] = nullptr;
      s.epochs.back()["bits_per_char"] = s.bits_per_char;
    }
    if (s.cfg.opts.progress) {
      if (s.cfg.opts.evaluate && s.language_model)
        std::fprintf(stderr, "epoch %lld: train loss %.4f, held-out loss %.4f (%.3f bits/char)\n",
                     static_cast<long long>(s.current_epoch + 1), s.last_epoch_loss, s.test_loss,
                     s.bits_per_char);
      else if (s.cfg.opts.evaluate)
        std::fprintf(stderr, "epoch %lld: train loss %.4f, test accuracy %.2f%%\n",
                     static_cast<long long>(s.current_epoch + 1), s.last_epoch_loss,
                     100.0 * s.test_accuracy);
      else
        std::fprintf(stderr, "epoch %lld: train loss %.4f\n",
                     static_cast<long long>(s.current_epoch + 1), s.last_epoch_loss);
    }
    s.epoch_loss_sum = 0;
    s.epoch_samples = 0;
    s.epoch_tokens = 0;
    s.epoch_run_samples = 0;
    if (!s.cfg.opts.checkpoint_dir.empty() && s.step < s.total_steps)
      write_checkpoint(self, [self] { start_step(self); });
    else
      start_step(self);
  };
  if (st.cfg.opts.evaluate)
    start_eval(self, next);
  else
    next();
}

/// A language model's epoch is long (a pass over the text): a run that
/// --steps ends inside one still reports the held-out loss at its end.
/// (Classifiers keep evaluating at epoch ends only.)
void final_eval(trainer_actor* self) {
  start_eval(self, [self] {
    auto& s = self->state;
    if (s.cfg.opts.progress)
      std::fprintf(stderr, "step %lld: held-out loss %.4f (%.3f bits/char)\n",
                   static_cast<long long>(s.step), s.test_loss, s.bits_per_char);
    start_step(self);
  });
}

/// --check-replicas: the replicas' parameter digests of a step, stage by
/// stage, must all equal replica 0's. Every shard must have sent one for
/// this step: a missing digest fails the check, it never passes it. The
/// digests are used up (cleared) by the check. Returns the failure, or
/// empty; counts the comparisons made in st.digest_comparisons.
std::string check_digests(trainer_state& st, std::int64_t step) {
  auto digests = std::exchange(st.digests, {});
  st.digests.assign(digests.size(), std::nullopt);
  auto where = [&](int r, int k, int t) {
    return "replica " + std::to_string(r) + " stage " + std::to_string(k) +
           (st.tp > 1 ? " tensor-parallel rank " + std::to_string(t) : std::string{});
  };
  for (int i = 0; i < st.depth * st.tp; ++i) {
    const int k = i / st.tp, t = i % st.tp;
    for (int r = 0; r < st.replicas; ++r)
      if (!digests[shard_index(st, r, k, t)])
        return "--check-replicas: " + where(r, k, t) + " sent no parameter digest for step " +
               std::to_string(step);
    const auto ref = *digests[shard_index(st, 0, k, t)];
    for (int r = 1; r < st.replicas; ++r) {
      ++st.digest_comparisons;
      if (*digests[shard_index(st, r, k, t)] != ref)
        return "--check-replicas: " + where(r, k, t) +
               " diverged from replica 0: its parameters differ after step " + std::to_string(step);
    }
  }
  return {};
}

void on_report(trainer_actor* self, runtime::stage_report& r) {
  auto& st = self->state;
  if (r.stage < 0 || r.stage >= st.depth || r.replica < 0 || r.replica >= st.replicas ||
      r.tp_rank < 0 || r.tp_rank >= st.tp) {
    fail(self, "report from an unknown stage " + std::to_string(r.stage) + " of replica " +
                   std::to_string(r.replica) + " (tensor-parallel rank " +
                   std::to_string(r.tp_rank) + ")");
    return;
  }
  const auto index = shard_index(st, r.replica, r.stage, r.tp_rank);
  const bool independent = independent_workers(st) && !st.evaluating;
  // A replica's loss: add them up (its tensor-parallel ranks all computed
  // the same one).
  if (r.stage == st.depth - 1 && r.tp_rank == 0) {
    auto& sum =
        independent
            ? st.step_parts[st.workers[static_cast<std::size_t>(r.replica)].part / st.replicas].loss
            : st.loss_report;
    sum.loss_sum += r.loss_sum;
    sum.correct += r.correct;
    sum.samples += r.samples;
    sum.tokens += r.tokens;
  }
  if (r.has_digest)
    st.digests[index] = r.params_digest;
  const bool timed = !st.evaluating && st.step - st.run_start_step >= st.cfg.opts.timing_warmup;
  st.compute_seconds += st.evaluating ? 0.0 : r.compute_seconds;
  if (!st.evaluating) {
    st.stage_totals.resize(st.cfg.stages.size());
    auto& t = st.stage_totals.at(index);
    t.stage = r.stage;
    t.replica = r.replica;
    t.tp_rank = r.tp_rank;
    t.ps_bytes += r.ps_bytes;
    t.ps_seconds += r.ps_seconds;
    t.buckets += r.buckets;
    t.allreduce_bytes += r.allreduce_bytes;
    t.allreduce_seconds += r.allreduce_seconds;
    t.compute_seconds += r.compute_seconds;
    t.messages_sent += r.messages_sent;
    t.bytes_sent += r.bytes_sent;
    t.peak_in_flight = std::max(t.peak_in_flight, r.peak_in_flight);
    t.peak_saved_bytes = std::max(t.peak_saved_bytes, r.peak_saved_bytes);
  }
  st.timed_compute_seconds += timed ? r.compute_seconds : 0.0;
  if (independent) {
    worker_step_done(self, r.replica);
    return;
  }
  if (--st.reports_pending > 0)
    return;
  if (st.evaluating) {
    const auto& loss = st.loss_report;
    st.eval_loss_sum += loss.loss_sum;
    st.eval_correct += loss.correct;
    st.eval_samples += loss.samples;
    st.eval_tokens += loss.tokens;
    --st.eval_batches_left;
    eval_next(self);
    return;
  }
  step_completed(self);
}

/// Async / ssp workers: replica `replica` reported its running step (every
/// shard). It takes its next part at once; the global step of its part is
/// done once every part of it is (start_step completes the steps in order).
void worker_step_done(trainer_actor* self, int replica) {
  auto& st = self->state;
  auto& w = st.workers[static_cast<std::size_t>(replica)];
  if (--w.pending > 0)
    return;
  w.running = false;
  ++w.next;
  ++st.step_parts[w.part / st.replicas].done;
  start_step(self);
}

/// The run's bookkeeping once training step st.step is done everywhere:
/// losses, replica checks, timing, progress, then the next step, the epoch's
/// end or the end.
void step_completed(trainer_actor* self) {
  auto& st = self->state;
  const auto& loss = st.loss_report;
  const bool timed = st.step - st.run_start_step >= st.cfg.opts.timing_warmup;
  if (st.replicas > 1 && st.cfg.opts.check_replicas > 0 &&
      (st.step + 1) % st.cfg.opts.check_replicas == 0) {
    if (auto why = check_digests(st, st.step); !why.empty()) {
      fail(self, why);
      return;
    }
    ++st.replica_checks;
  }
  st.epoch_loss_sum += loss.loss_sum;
  st.epoch_samples += loss.samples;
  st.epoch_tokens += loss.tokens;
  st.run_samples += loss.samples;
  st.epoch_run_samples += loss.samples;
  const double step_seconds = seconds_between(st.t_step, clock_type::now());
  st.trace.complete_until_now("step", "step", st.t_step,
                              {{"step", st.step}, {"epoch", st.current_epoch}});
  if (independent_workers(st)) // the next step's time runs from here
    st.t_step = clock_type::now();
  st.train_seconds += step_seconds;
  if (timed) {
    st.timed_seconds += step_seconds;
    ++st.timed_steps;
  }
  ++st.step;
  bool epoch_end = st.current_index + 1 == st.steps_per_epoch;
  send_progress(self, step_seconds, loss.samples);
  if (st.cfg.opts.progress) {
    auto elapsed = seconds_between(st.t_epoch, clock_type::now());
    st.progress.update(st.current_index + 1, elapsed > 0 ? st.epoch_run_samples / elapsed : 0,
                       st.epoch_tokens ? st.epoch_loss_sum / double(st.epoch_tokens) : 0,
                       epoch_end || st.step >= st.total_steps);
  }
  if (epoch_end)
    epoch_done(self);
  else if (st.step >= st.total_steps && st.language_model && st.cfg.opts.evaluate)
    final_eval(self);
  else
    start_step(self);
}

/// Clipping: a stage's part of the step's global gradient norm. When every
/// stage has sent its part, each gets the total (added in stage order, so the
/// same on every run) and clips with it.
void on_grad_sumsq(trainer_actor* self, std::int64_t step, std::int32_t stage, double sumsq) {
  auto& st = self->state;
  const auto i = static_cast<std::size_t>(stage);
  if (st.evaluating || step != st.step || stage < 0 || i >= st.grad_sumsq.size() ||
      st.grad_sumsq[i]) {
    fail(self, "unexpected gradient norm from stage " + std::to_string(stage) + " for step " +
                   std::to_string(step));
    return;
  }
  st.grad_sumsq[i] = sumsq;
  if (--st.sumsq_pending > 0)
    return;
  // Replica 0's shards hold the whole gradient (every replica holds the same
  // all-reduced sum, which they must agree on to the bit); a stage's
  // tensor-parallel ranks each counted their slices (rank 0 the replicated
  // parameters too).
  const auto per_replica = static_cast<std::size_t>(st.depth * st.tp);
  double total = 0;
  for (std::size_t i = 0; i < per_replica; ++i)
    total += *st.grad_sumsq[i];
  for (int r = 1; r < st.replicas; ++r)
    for (std::size_t i = 0; i < per_replica; ++i)
      if (*st.grad_sumsq[static_cast<std::size_t>(r) * per_replica + i] != *st.grad_sumsq[i]) {
        fail(self, "replica " + std::to_string(r) + " diverged from replica 0: stage " +
                       std::to_string(i / static_cast<std::size_t>(st.tp)) +
                       "'s all-reduced gradient norm differs in step " + std::to_string(step));
        return;
      }
  st.grad_norm = std::sqrt(total);
  for (const auto& s : st.cfg.stages)
    self->send(s, runtime::clip_atom::value, step, total);
}

/// Tells report_to (the supervisor: /status, /metrics) how the job is going.
void send_progress(trainer_actor* self, double step_seconds, std::int64_t samples) {
  auto& st = self->state;
  nlohmann::json stages = nlohmann::json::array();
  for (const auto& t : st.stage_totals)
    stages.push_back({{"stage", t.stage},
                      {"replica", t.replica},
                      {"messages_sent", t.messages_sent},
                      {"bytes_sent", t.bytes_sent},
                      {"compute_seconds", t.compute_seconds},
                      {"allreduce_bytes", t.allreduce_bytes},
                      {"allreduce_seconds", t.allreduce_seconds},
                      {"tp_rank", t.tp_rank},
                      {"ps_bytes", t.ps_bytes}});
  nlohmann::json p{{"step", st.step},
                   {"total_steps", st.total_steps},
                   {"epoch", st.current_epoch + 1},
                   {"loss", st.epoch_tokens ? st.epoch_loss_sum / double(st.epoch_tokens) : 0.0},
                   {"lr", learning_rate(st, std::max<std::int64_t>(0, st.step - 1))},
                   {"step_seconds", step_seconds},
                   {"samples_per_second", step_seconds > 0 ? double(samples) / step_seconds : 0.0},
                   {"stages", stages}};
  self->send(st.cfg.report_to, progress_atom::value, p.dump());
}

nlohmann::json make_report(const trainer_state& st) {
  const auto& o = st.cfg.opts;
  double final_loss =
      st.epoch_tokens > 0 ? st.epoch_loss_sum / double(st.epoch_tokens) : st.last_epoch_loss;
  auto known = [](double v) { return v >= 0 ? nlohmann::json(v) : nlohmann::json(); };
  int threads = 0;
  for (const auto& d : st.cfg.topology.devices)
    threads += d.threads;
  // Per stage over the run's training steps: memory peaks (the schedule's
  // cost, `troupe bench pipeline`) and the totals /metrics shows.
  nlohmann::json stages = nlohmann::json::array();
  for (const auto& t : st.stage_totals) {
    stages.push_back({{"stage", t.stage},
                      {"compute_seconds", t.compute_seconds},
                      {"peak_in_flight", t.peak_in_flight},
                      {"peak_saved_bytes", t.peak_saved_bytes},
                      {"messages_sent", t.messages_sent},
                      {"bytes_sent", t.bytes_sent}});
    auto& j = stages.back();
    if (st.replicas > 1) {
      j["replica"] = t.replica;
      j["allreduce_buckets"] = t.buckets;
      j["allreduce_bytes"] = t.allreduce_bytes;
      j["allreduce_seconds"] = t.allreduce_seconds;
    }
    if (st.tp > 1)
      j["tp_rank"] = t.tp_rank;
    if (!st.cfg.ps_shards.empty()) {
      j["ps_bytes"] = t.ps_bytes;
      j["ps_seconds"] = t.ps_seconds;
    }
  }
  nlohmann::json r{
      {"model", o.model},
      {"strategy", st.cfg.topology.strategy()},
      {"epochs", o.epochs},
      {"steps", st.step},
      {"steps_this_run", st.step - st.run_start_step},
      {"batch", o.batch},
      {"final_loss", final_loss},
      {"test_accuracy", known(st.test_accuracy)},
      // Language models: the held-out text's loss per character, in bits.
      {"bits_per_char", known(st.bits_per_char)},
      {"test_loss", known(st.test_loss)},
      // With --clip-norm: the last step's global gradient norm before clipping.
      {"grad_norm", known(st.grad_norm)},
      {"replicas", st.replicas},
      {"tp", st.tp},
      // Parameter servers: per shard its counters (max_gap: the largest
      // staleness it saw serving a pull; ssp keeps it <= staleness).
      {"ps", st.ps_report},
      {"ps_mode", st.cfg.ps_shards.empty() ? "" : std::string{to_string(st.cfg.topology.ps_mode)}},
      // --check-replicas: steps after which every replica's parameters were
      // found bitwise identical.
      {"replica_checks", st.replica_checks},
      {"replica_digest_comparisons", st.digest_comparisons},
      {"samples_per_second", st.train_seconds > 0 ? st.run_samples / st.train_seconds : 0.0},
      {"wall_seconds", seconds_between(st.t_start, clock_type::now())},
      {"train_seconds", st.train_seconds},
      {"device_compute_seconds", st.compute_seconds},
      {"timed_steps", st.timed_steps},
      {"timed_seconds", st.timed_seconds},
      {"timed_steps_per_second",
       st.timed_seconds > 0 ? static_cast<double>(st.timed_steps) / st.timed_seconds : 0.0},
      {"timed_device_compute_seconds", st.timed_compute_seconds},
      {"stages", stages},
      {"git_commit", std::string{runtime::git_commit()}},
      {"threads", threads},
      {"blas", kernels::cpu::blas_description()},
      {"build", std::string{runtime::build_description()}},
      {"config", to_json(o)},
      {"plan", to_json(st.cfg.topology)},
      {"epoch_log", st.epochs},
      {"input_normalization", runtime::input_normalization()},
  };
  return r;
}

/// --trace: gathers every stage's events, adds the trainer's own and writes
/// the file (atomically: a reader never sees half a trace), then `then`.
void write_trace(trainer_actor* self, std::function<void()> then) {
  // Layer shards and ps shards alike answer get_trace_atom.
  auto all = self->state.cfg.stages;
  all.insert(all.end(), self->state.cfg.ps_shards.begin(), self->state.cfg.ps_shards.end());
  gather<std::string>(
      self, all,
      [self, then](std::vector<std::string> replies) {
        const auto n = self->state.cfg.stages.size();
        std::vector<std::string> stages(replies.begin(),
                                        replies.begin() + static_cast<std::ptrdiff_t>(n));
        std::vector<std::string> ps(replies.begin() + static_cast<std::ptrdiff_t>(n),
                                    replies.end());
        auto& st = self->state;
        st.trace_written = true;
        const auto& o = st.cfg.opts;
        nlohmann::json run{{"model", o.model},
                           {"strategy", st.cfg.topology.strategy()},
                           {"schedule", std::string{to_string(st.cfg.topology.schedule)}},
                           {"stages", st.depth},
                           {"replicas", st.replicas},
                           {"microbatches", st.cfg.topology.microbatches},
                           {"batch", o.batch},
                           {"steps", st.step},
                           {"git_commit", std::string{runtime::git_commit()}}};
        try {
          auto text =
              job_trace(st.cfg.topology, stages, ps, st.trace, std::move(run)).dump() + "\n";
          runtime::write_file_atomically(
              o.trace_file, {reinterpret_cast<const std::byte*>(text.data()), text.size()});
        } catch (const std::exception& e) {
          fail(self, "--trace " + o.trace_file + ": " + e.what());
          return;
        }
        st.log->info("trace written to {}", o.trace_file);
        then();
      },
      runtime::get_trace_atom::value);
}

/// Parameter servers: their counters, for the report.
void gather_ps_stats(trainer_actor* self, std::function<void()> then) {
  gather<runtime::ps_stats>(
      self, self->state.cfg.ps_shards,
      [self, then](std::vector<runtime::ps_stats> stats) {
        auto& st = self->state;
        st.ps_report = nlohmann::json::array();
        for (const auto& x : stats)
          st.ps_report.push_back({{"shard", x.shard},
                                  {"version", x.version},
                                  {"pushes", x.pushes},
                                  {"pulls", x.pulls},
                                  {"bytes_in", x.bytes_in},
                                  {"bytes_out", x.bytes_out},
                                  {"updates", x.updates},
                                  {"max_gap", x.max_gap},
                                  {"apply_seconds", x.apply_seconds}});
        st.ps_stats_gathered = true;
        then();
      },
      runtime::ps_stats_atom::value);
}

void finish(trainer_actor* self) {
  if (!self->state.cfg.opts.trace_file.empty() && !self->state.trace_written) {
    write_trace(self, [self] { finish(self); });
    return;
  }
  if (!self->state.cfg.ps_shards.empty() && !self->state.ps_stats_gathered) {
    gather_ps_stats(self, [self] { finish(self); });
    return;
  }
  auto deliver = [self] {
    collect_model(self, false, [self](model_state m) {
      auto& st = self->state;
      self->send(st.cfg.report_to, job_done_atom::value, make_report(st).dump(),
                 to_named(m.params));
      self->quit();
    });
  };
  if (!self->state.cfg.opts.checkpoint_dir.empty())
    write_checkpoint(self, deliver);
  else
    deliver();
}

caf::behavior trainer(trainer_actor* self, trainer_config cfg) {
  auto& st = self->state;
  st.cfg = std::move(cfg);
  st.steps_per_epoch = batches_per_epoch(st.cfg.train_samples, st.cfg.opts.batch);
  st.total_steps = total_training_steps(st.cfg.opts, st.cfg.train_samples);
  st.language_model = models::is_sequence_model(st.cfg.topology.model);
  st.replicas = st.cfg.topology.replicas;
  st.depth = st.cfg.topology.depth();
  st.tp = st.cfg.topology.tp;
  st.workers.assign(static_cast<std::size_t>(st.replicas), {});
  if (st.tp > 1)
    st.tp_layout = models::tp_layout(st.cfg.topology.model, st.tp);
  const auto& o = st.cfg.opts;
  if (o.lr_schedule == "cosine" || o.warmup_steps > 0) {
    // Constant after a warm-up is a "cosine" from lr down to lr.
    try {
      st.schedule.emplace(models::lr_schedule_config{o.lr, o.warmup_steps, st.total_steps,
                                                     o.lr_schedule == "cosine" ? o.lr / 10 : o.lr});
    } catch (const std::invalid_argument& e) {
      fail(self, std::string{"--lr-schedule: "} + e.what());
      return {};
    }
  }
  if (!st.cfg.opts.trace_file.empty())
    st.trace = runtime::trace_recorder{0};
  if (st.cfg.resume)
    resume(self);
  else
    sync_replicas(self);
  return {
      [self](runtime::stage_report& r) { on_report(self, r); },
      [self](runtime::grad_sumsq_atom, std::int64_t step, std::int32_t stage, double sumsq) {
        on_grad_sumsq(self, step, stage, sumsq);
      },
  };
}

} // namespace

std::int64_t total_training_steps(const train_options& opts, std::int64_t train_samples) {
  auto steps = batches_per_epoch(train_samples, opts.batch) * opts.epochs;
  return opts.max_steps > 0 ? std::min(steps, opts.max_steps) : steps;
}

void check_resume_compatible(const runtime::checkpoint& ck, const train_options& opts,
                             const plan& topology, std::int64_t train_samples) {
  try {
    if (ck.model != topology.model.to_json())
      throw runtime::input_error("--resume: the checkpoint holds a different model than --model " +
                                 opts.model);
    const auto& cfg = ck.config;
    if (cfg.at("batch").get<std::int64_t>() != opts.batch)
      throw runtime::input_error("--resume: the checkpoint was trained with --batch " +
                                 cfg.at("batch").dump() + ", not " + std::to_string(opts.batch));
    if (cfg.at("seed").get<std::uint64_t>() != opts.seed)
      throw runtime::input_error("--resume: the checkpoint was trained with --seed " +
                                 cfg.at("seed").dump() + ", not " + std::to_string(opts.seed));
    if (cfg.at("optimizer").get<std::string>() != opts.optimizer)
      throw runtime::input_error("--resume: the checkpoint was trained with --optimizer " +
                                 cfg.at("optimizer").get<std::string>());
    const auto& ts = ck.trainer_state;
    if (ts.at("steps_per_epoch").get<std::int64_t>() !=
        batches_per_epoch(train_samples, opts.batch))
      throw runtime::input_error("--resume: the checkpoint's training set has a different size");
    if (ts.at("global_step").get<std::int64_t>() < 0)
      throw runtime::input_error("--resume: the checkpoint has a negative step");
    for (const char* key : {"epoch_loss_sum", "epoch_samples", "last_epoch_loss"})
      static_cast<void>(ts.at(key));
  } catch (const nlohmann::json::exception& e) {
    throw runtime::input_error(std::string{"--resume: malformed checkpoint state: "} + e.what());
  }
}

caf::actor spawn_trainer(caf::actor_system& sys, trainer_config cfg) {
  return sys.spawn(trainer, std::move(cfg));
}

} // namespace troupe::actors
