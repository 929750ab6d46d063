#include "actors/training/checkpoint.hpp"

#include <algorithm>
#include <exception>
#include <memory>
#include <optional>
#include <string>

#include "actors/pipeline/data_loader.hpp"
#include "actors/plan/ps_assignment.hpp"
#include "actors/training/model_gather.hpp"
#include "runtime/error.hpp"

namespace troupe::actors::training {

namespace {

nlohmann::json trainer_state_json(const trainer_state& st, std::int64_t step,
                                  const epoch_state& epoch) {
  return {{"global_step", step},
          {"epoch", step / st.steps_per_epoch},
          {"batch_index", step % st.steps_per_epoch},
          {"steps_per_epoch", st.steps_per_epoch},
          {"epoch_loss_sum", epoch.loss_sum},
          {"epoch_samples", epoch.samples},
          {"epoch_tokens", epoch.tokens},
          {"last_epoch_loss", epoch.last_loss}};
}

} // namespace

runtime::checkpoint make_checkpoint(const trainer_state& st, model_state m, std::int64_t step,
                                    const epoch_state& epoch) {
  runtime::checkpoint ck;
  ck.params = std::move(m.params);
  ck.optimizer_state = std::move(m.state);
  ck.optimizer_meta["type"] = st.cfg.opts.optimizer;
  ck.optimizer_meta["steps"] = m.steps;
  ck.trainer_state = trainer_state_json(st, step, epoch);
  ck.rng = {{"seed", st.cfg.opts.seed},
            {"kind", "counter-based (seed, key, counter); no hidden state"},
            {"streams",
             {"init: hash(parameter name)", "shuffle: hash(\"shuffle\") ^ epoch",
              "dropout: (layer, step, sample)"}}};
  ck.data_loader = {
      {"epoch", step / st.steps_per_epoch}, {"batch_index", step % st.steps_per_epoch},
      {"batch", st.cfg.opts.batch},         {"shuffle", true},
      {"seed", st.cfg.opts.seed},           {"samples", st.cfg.train_samples}};
  ck.model = st.cfg.topology.model.to_json();
  ck.config = to_json(st.cfg.opts);
  ck.input_normalization = st.cfg.input_normalization;
  return ck;
}

namespace {

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

/// The optimizer's step count the checkpoint was written at.
std::string optimizer_steps(const runtime::checkpoint& ck) {
  return ck.optimizer_meta.count("steps") ? ck.optimizer_meta.at("steps") : "0";
}

/// The trainer's own position and epoch accumulators from the checkpoint.
void load_trainer_state(trainer_state& st, const nlohmann::json& ts) {
  st.step = ts.at("global_step").get<std::int64_t>();
  st.epoch.loss_sum = ts.at("epoch_loss_sum").get<double>();
  st.epoch.samples = ts.at("epoch_samples").get<std::int64_t>();
  // Checkpoints from before language models counted samples only.
  st.epoch.tokens = ts.value("epoch_tokens", st.epoch.samples);
  st.epoch.last_loss = ts.at("last_epoch_loss").get<double>();
  st.run_start_step = st.step;
  for (auto& w : st.async.workers) // async / ssp workers go on from here
    w.next = st.step;
  st.async.next_part = st.step * st.grid.replicas;
}

/// Counts the shards' and loaders' acknowledgements of a resume; the last
/// one runs `then`.
struct resume_acks {
  trainer_actor* self;
  std::shared_ptr<std::size_t> left;
  std::function<void()> then;

  template <class... Ts>
  void request(const caf::actor& to, Ts&&... xs) const {
    auto self_ = self;
    self->request(to, caf::infinite, std::forward<Ts>(xs)...)
        .then(
            [left = left, then = then](bool) {
              if (--*left == 0)
                then();
            },
            [self_](caf::error& err) { fail(self_, "--resume: " + self_->system().render(err)); });
  }
};

/// Layer shard i's part of the checkpoint: its layers' parameters (and
/// without parameter servers their optimizer state), tensor-parallel slices
/// cut. Throws on a checkpoint that does not fit.
void load_shard(const resume_acks& acks, std::size_t i, bool with_state) {
  const auto& st = acks.self->state;
  const auto& ck = *st.cfg.resume;
  const auto& slot = st.cfg.topology.stages[i];
  auto params = select_layers(ck.params, slot.chunks);
  auto state = select_layers(ck.optimizer_state, slot.chunks);
  if (st.grid.tp > 1) { // this shard's slices
    params = to_named(models::tp_slice(st.tp_layout, slot.tp_rank, merge({params})));
    state = to_named(models::tp_slice(st.tp_layout, slot.tp_rank, merge({state})));
  }
  state.meta_keys = {"steps"};
  state.meta_values = {optimizer_steps(ck)};
  acks.request(st.cfg.stages[i], actors::set_params_atom::value, params);
  if (with_state)
    acks.request(st.cfg.stages[i], actors::set_state_atom::value, state);
}

/// Parameter server i's pieces of the parameters and the optimizer state.
/// Throws on a checkpoint that does not fit.
void load_ps_shard(const resume_acks& acks, std::size_t i) {
  const auto& st = acks.self->state;
  const auto& ck = *st.cfg.resume;
  const auto& layout = st.cfg.topology.ps_layout;
  auto params = split_pieces(layout, static_cast<int>(i), to_named(ck.params));
  auto full_state = to_named(ck.optimizer_state);
  full_state.meta_keys = {"steps"};
  full_state.meta_values = {optimizer_steps(ck)};
  auto state = split_pieces(layout, static_cast<int>(i), full_state);
  acks.request(st.cfg.ps_shards[i], actors::set_params_atom::value, params);
  acks.request(st.cfg.ps_shards[i], actors::set_state_atom::value, state);
}

} // namespace

void write_checkpoint(trainer_actor* self, std::function<void()> then) {
  if (self->state.snap.writing) { // one writer at a time, the latest step last
    self->state.snap.after_write = [self, then] { write_checkpoint(self, then); };
    return;
  }
  collect_model(self, true, [self, then](model_state m) {
    auto& st = self->state;
    try {
      runtime::write_checkpoint(st.cfg.opts.checkpoint_dir,
                                make_checkpoint(st, std::move(m), st.step, st.epoch));
    } catch (const std::exception& e) {
      fail(self, e.what());
      return;
    }
    st.log->debug("checkpoint at step {} written to {}", st.step, st.cfg.opts.checkpoint_dir);
    st.snap.last_checkpoint_step = st.step;
    st.snap.last_checkpoint = clock_type::now();
    self->send(st.cfg.report_to, checkpointed_atom::value, st.step);
    then();
  });
}

void resume(trainer_actor* self, std::function<void()> then) {
  auto& st = self->state;
  try {
    load_trainer_state(st, st.cfg.resume->trainer_state);
  } catch (const nlohmann::json::exception& e) {
    fail(self, std::string{"checkpoint: "} + e.what());
    return;
  }
  // With parameter servers the workers take the parameters only; the ps
  // shards take their pieces of the parameters and the optimizer state.
  const bool ps = !st.cfg.ps_shards.empty();
  resume_acks acks{self,
                   std::make_shared<std::size_t>((ps ? 1 : 2) * st.cfg.stages.size() +
                                                 2 * st.cfg.ps_shards.size() +
                                                 st.cfg.train_loaders.size()),
                   std::move(then)};
  try {
    for (std::size_t i = 0; i < st.cfg.stages.size(); ++i)
      load_shard(acks, i, !ps);
    for (std::size_t i = 0; i < st.cfg.ps_shards.size(); ++i)
      load_ps_shard(acks, i);
  } catch (const std::exception& e) {
    fail(self, std::string{"--resume: "} + e.what());
    return;
  }
  for (const auto& loader : st.cfg.train_loaders)
    acks.request(loader, actors::seek_atom::value, st.step / st.steps_per_epoch,
                 st.step % st.steps_per_epoch);
}

void load_params(trainer_actor* self, std::function<void()> then) {
  auto& st = self->state;
  st.step = st.cfg.resume->trainer_state.value("global_step", std::int64_t{0});
  st.run_start_step = st.step;
  resume_acks acks{self, std::make_shared<std::size_t>(st.cfg.stages.size()), std::move(then)};
  try {
    for (std::size_t i = 0; i < st.cfg.stages.size(); ++i)
      load_shard(acks, i, false);
  } catch (const std::exception& e) {
    fail(self, std::string{"checkpoint: "} + e.what());
  }
}

} // namespace troupe::actors::training

namespace troupe::actors {

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

} // namespace troupe::actors
