#include "actors/pipeline/data_loader.hpp"

#include <algorithm>
#include <deque>
#include <numeric>

#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>

#include "runtime/error.hpp"
#include "runtime/net/transport/courier.hpp"
#include "runtime/rng.hpp"

namespace troupe::actors {

std::int64_t batches_per_epoch(std::int64_t samples, std::int64_t batch) {
  return (samples + batch - 1) / batch;
}

std::vector<std::int32_t> epoch_permutation(std::int64_t samples, std::uint64_t seed,
                                            std::int64_t epoch) {
  std::vector<std::int32_t> order(static_cast<std::size_t>(samples));
  std::iota(order.begin(), order.end(), 0);
  runtime::rng_stream rng{seed, runtime::hash_name("shuffle") ^ static_cast<std::uint64_t>(epoch)};
  for (std::int64_t i = samples - 1; i > 0; --i) {
    auto j = static_cast<std::int64_t>(rng.next_below(static_cast<std::uint64_t>(i + 1)));
    std::swap(order[i], order[j]);
  }
  return order;
}

dataset text_windows(const runtime::text_dataset& text, runtime::text_split split,
                     std::string name) {
  auto batch = text.make_batch(split, text.window_starts(split));
  return memory_dataset(std::move(name), std::move(batch.input), std::move(batch.target));
}

nlohmann::json to_json(const loader_config& c) {
  return {{"sample_shape", c.sample_shape},
          {"input_dtype", c.input_dtype
                              ? nlohmann::json(std::string{runtime::to_string(*c.input_dtype)})
                              : nlohmann::json()},
          {"batch", c.batch},
          {"parts", c.parts},
          {"shares", c.shares},
          {"replica", c.replica},
          {"shuffle", c.shuffle},
          {"seed", c.seed},
          {"prefetch", c.prefetch}};
}

loader_config loader_config_from_json(const nlohmann::json& j) {
  loader_config c;
  try {
    c.sample_shape = j.at("sample_shape").get<runtime::shape_t>();
    if (!j.at("input_dtype").is_null()) {
      const auto name = j.at("input_dtype").get<std::string>();
      c.input_dtype = runtime::parse_dtype(name);
      if (!c.input_dtype)
        throw runtime::input_error("unknown dtype '" + name + "'");
    }
    c.batch = j.at("batch").get<std::int64_t>();
    c.parts = j.at("parts").get<int>();
    c.shares = j.at("shares").get<std::vector<double>>();
    c.replica = j.at("replica").get<int>();
    c.shuffle = j.at("shuffle").get<bool>();
    c.seed = j.at("seed").get<std::uint64_t>();
    c.prefetch = j.at("prefetch").get<int>();
  } catch (const nlohmann::json::exception& e) {
    throw runtime::input_error(std::string{"data loader config: "} + e.what());
  }
  if (c.batch < 1 || c.parts < 1 || c.shares.empty() || c.replica < 0 ||
      c.replica >= static_cast<int>(c.shares.size()) || c.prefetch < 0)
    throw runtime::input_error("data loader config: " + to_json(c).dump() + " is out of range");
  return c;
}

std::vector<std::int64_t> split_by_shares(std::int64_t n, const std::vector<double>& shares) {
  if (shares.empty())
    throw std::invalid_argument("split_by_shares: no shares");
  std::vector<std::int64_t> counts(shares.size());
  std::vector<std::pair<double, std::size_t>> rest;
  std::int64_t given = 0;
  for (std::size_t i = 0; i < shares.size(); ++i) {
    const double exact = static_cast<double>(n) * shares[i];
    counts[i] = std::min<std::int64_t>(n - given, static_cast<std::int64_t>(exact));
    given += counts[i];
    rest.emplace_back(exact - static_cast<double>(counts[i]), i);
  }
  std::stable_sort(rest.begin(), rest.end(),
                   [](const auto& a, const auto& b) { return a.first > b.first; });
  for (std::size_t k = 0; given < n; k = (k + 1) % rest.size(), ++given)
    ++counts[rest[k].second];
  return counts;
}

namespace {

/// Targets as f32 [n, K] for a real-valued loss: labels become their values.
runtime::tensor real_targets(const runtime::tensor& y) {
  const auto n = y.dim(0);
  const auto width = n ? y.numel() / n : 1;
  if (y.type() == runtime::dtype::f32)
    return y.reshape({n, width});
  auto out = runtime::tensor::empty(runtime::dtype::f32, {n, width});
  const auto* in = y.data<std::int32_t>();
  auto* o = out.mutable_data<float>();
  for (std::int64_t i = 0; i < y.numel(); ++i)
    o[i] = static_cast<float>(in[i]);
  return out;
}

} // namespace

actors::batch_msg make_batch(const loader_config& cfg, const std::vector<std::int32_t>& order,
                             std::int64_t epoch, std::int64_t index) {
  const auto n = cfg.data.size();
  const auto global_begin = index * cfg.batch;
  const auto global_size = std::min(cfg.batch, n - global_begin);
  // This replica's samples: a contiguous part of the global batch.
  const auto counts = split_by_shares(global_size, cfg.shares);
  std::int64_t replica_offset = 0;
  for (int r = 0; r < cfg.replica; ++r)
    replica_offset += counts.at(static_cast<std::size_t>(r));
  const auto begin = global_begin + replica_offset;
  const auto size = counts.at(static_cast<std::size_t>(cfg.replica));
  const auto& src = *cfg.data.source;
  const auto feature = runtime::shape_numel(cfg.sample_shape);
  if (feature != runtime::shape_numel(src.sample_shape()))
    throw std::invalid_argument("data set " + cfg.data.name + " has samples of " +
                                std::to_string(runtime::shape_numel(src.sample_shape())) +
                                " values, the model wants " + runtime::to_string(cfg.sample_shape));
  const bool as_is = src.sample_dtype() == runtime::dtype::i32 &&
                     cfg.input_dtype.value_or(runtime::dtype::i32) == runtime::dtype::i32;
  actors::batch_msg b;
  b.epoch = epoch;
  b.index = index;
  b.size = global_size;
  const std::int64_t parts = std::min<std::int64_t>(cfg.parts, size);
  std::int64_t offset = 0;
  for (std::int64_t p = 0; p < parts; ++p) {
    // Even split; the first (size % parts) parts get one sample more.
    auto count = size / parts + (p < size % parts ? 1 : 0);
    runtime::shape_t shape{count};
    shape.insert(shape.end(), cfg.sample_shape.begin(), cfg.sample_shape.end());
    const auto* first = order.data() + begin + offset;
    auto [raw_x, raw_y] = src.read({first, static_cast<std::size_t>(count)});
    runtime::tensor x;
    if (as_is) {
      x = raw_x.reshape(shape);
    } else {
      x = runtime::tensor::empty(runtime::dtype::f32, shape);
      transform_inputs(cfg.transform, raw_x.type(), raw_x.raw_data(), x.mutable_data<float>(),
                       count, feature);
    }
    b.inputs.push_back(std::move(x));
    b.labels.push_back(cfg.real_targets ? real_targets(raw_y) : std::move(raw_y));
    b.offsets.push_back(replica_offset + offset);
    b.counts.push_back(count);
    offset += count;
  }
  return b;
}

namespace {

struct loader_state {
  loader_config cfg;
  std::int64_t epoch = 0;
  std::int64_t index = 0; ///< position of the next batch to hand out
  std::int64_t order_epoch = -1;
  std::vector<std::int32_t> order;
  std::deque<actors::batch_msg> ready; ///< prepared batches, from the position on
  bool refill_pending = false;
  static inline const char* name = "data_loader";

  std::int64_t per_epoch() const { return batches_per_epoch(cfg.data.size(), cfg.batch); }

  actors::batch_msg build(std::int64_t e, std::int64_t i) {
    if (!cfg.shuffle) {
      if (order.empty()) {
        order.resize(static_cast<std::size_t>(cfg.data.size()));
        std::iota(order.begin(), order.end(), 0);
      }
    } else if (order_epoch != e) {
      order = epoch_permutation(cfg.data.size(), cfg.seed, e);
      order_epoch = e;
    }
    return make_batch(cfg, order, e, i);
  }

  /// The position `k` batches after the current one.
  std::pair<std::int64_t, std::int64_t> ahead(std::int64_t k) const {
    auto flat = index + k;
    return {epoch + flat / per_epoch(), flat % per_epoch()};
  }
};

using loader_actor = caf::stateful_actor<loader_state>;

using refill_atom = caf::atom_constant<caf::atom("refill")>;

void schedule_refill(loader_actor* self) {
  auto& st = self->state;
  if (!st.refill_pending && st.ready.size() < static_cast<std::size_t>(st.cfg.prefetch)) {
    st.refill_pending = true;
    self->send(self, refill_atom::value);
  }
}

/// The batch at the position, prepared or built now; the position advances.
actors::batch_msg take_next(loader_actor* self) {
  auto& st = self->state;
  actors::batch_msg b;
  if (!st.ready.empty()) {
    b = std::move(st.ready.front());
    st.ready.pop_front();
  } else {
    b = st.build(st.epoch, st.index);
  }
  std::tie(st.epoch, st.index) = st.ahead(1);
  if (st.ready.empty())
    schedule_refill(self);
  return b;
}

/// Sends `b`'s parts to the stages of step `step` and keeps only its
/// positions: every receiver shares the tensors in process.
void deliver(loader_actor* self, actors::batch_msg& b, std::int64_t step, bool training,
             const std::vector<caf::actor>& inputs_to, const std::vector<caf::actor>& labels_to) {
  const auto& courier = self->state.cfg.courier;
  for (std::size_t i = 0; i < b.inputs.size(); ++i) {
    const auto mb = static_cast<std::int32_t>(i);
    for (const auto& to : labels_to) // small: inline through CAF, as the trainer sent them
      caf::anon_send(to, actors::labels_msg{step, mb, b.labels[i]});
    for (const auto& to : inputs_to)
      runtime::transport::deliver(
          courier, to, actors::activation_msg{step, mb, b.offsets[i], training, b.inputs[i]});
  }
  b.inputs.clear();
  b.labels.clear();
}

caf::behavior data_loader(loader_actor* self, loader_config cfg) {
  self->state.cfg = std::move(cfg);
  if (self->state.cfg.data.size() == 0) {
    self->quit(caf::make_error(caf::sec::invalid_argument,
                               "data_loader: data set " + self->state.cfg.data.name + " is empty"));
    return {};
  }
  return {
      [self](actors::next_batch_atom) { return take_next(self); },
      [self](actors::next_batch_atom, std::int64_t step, bool training,
             const std::vector<caf::actor>& inputs_to, const std::vector<caf::actor>& labels_to) {
        auto b = take_next(self);
        deliver(self, b, step, training, inputs_to, labels_to);
        return b;
      },
      [self](actors::prefetch_atom) { schedule_refill(self); },
      [self](refill_atom) {
        auto& st = self->state;
        st.refill_pending = false;
        if (st.ready.size() < static_cast<std::size_t>(st.cfg.prefetch)) {
          auto [e, i] = st.ahead(static_cast<std::int64_t>(st.ready.size()));
          st.ready.push_back(st.build(e, i));
          schedule_refill(self);
        }
      },
      [self](reshare_atom, std::vector<double>& shares) {
        auto& st = self->state;
        if (shares.size() != st.cfg.shares.size() ||
            std::any_of(shares.begin(), shares.end(), [](double w) { return !(w > 0); })) {
          self->quit(caf::make_error(caf::sec::invalid_argument,
                                     "data_loader: " + std::to_string(shares.size()) +
                                         " new shares for " + std::to_string(st.cfg.shares.size()) +
                                         " replicas, or one not positive"));
          return;
        }
        st.cfg.shares = std::move(shares);
        st.ready.clear(); // prepared with the old shares
        schedule_refill(self);
      },
      [self](actors::seek_atom, std::int64_t epoch, std::int64_t index) -> caf::result<bool> {
        auto& st = self->state;
        if (epoch < 0 || index < 0 || index >= st.per_epoch())
          return caf::make_error(caf::sec::invalid_argument,
                                 "data_loader: position (" + std::to_string(epoch) + ", " +
                                     std::to_string(index) + ") out of range");
        st.epoch = epoch;
        st.index = index;
        st.ready.clear();
        schedule_refill(self);
        return true;
      },
  };
}

} // namespace

caf::actor spawn_data_loader(caf::actor_system& sys, loader_config cfg) {
  return sys.spawn(data_loader, std::move(cfg));
}

} // namespace troupe::actors
