#include "actors/pipeline/shard_compute.hpp"

#include <chrono>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>

#include "models/layers/init.hpp"
#include "models/tensor_parallel.hpp"
#include "models/train/grad_clip.hpp"
#include "models/train/sequence_loss.hpp"
#include "runtime/error.hpp"

namespace troupe::actors {

using runtime::tensor;

std::vector<models::parameter*> compute_state::parameters() {
  std::vector<models::parameter*> r;
  for (auto& c : chunks)
    for (auto* p : c.parameters())
      r.push_back(p);
  return r;
}

double compute_state::grad_sum_of_squares() {
  auto params = parameters();
  if (cfg.tp_rank > 0)
    std::erase_if(params, [&](const models::parameter* p) { return replicated.count(p->name); });
  return models::sum_of_squares(params);
}

std::size_t compute_state::saved_bytes() const {
  std::size_t r = 0;
  for (const auto& c : chunks)
    r += c.saved_bytes();
  return r;
}

std::shared_ptr<compute_state> make_compute_state(caf::actor_system& sys, const shard_config& cfg) {
  auto c = std::make_shared<compute_state>();
  c->cfg = cfg;
  if (cfg.tp > 1) {
    c->tp = std::make_shared<tp_group_client>(sys, cfg.tp_rank, cfg.tp);
    for (const auto& [name, splits] : models::tp_layout(cfg.model, cfg.tp))
      if (splits.at(static_cast<std::size_t>(cfg.tp_rank)).axis < 0)
        c->replicated.insert(name);
  }
  for (const auto& r : cfg.chunks)
    if (c->tp)
      c->chunks.push_back(
          models::instantiate_tensor_parallel(cfg.model, r.begin, r.end, cfg.seed, c->tp));
    else
      c->chunks.emplace_back(models::instantiate(cfg.model, r.begin, r.end, cfg.seed));
  if (cfg.all_reduces())
    c->buckets.cut(c->chunks, cfg.bucket_bytes);
  c->opt = models::make_optimizer(cfg.optimizer);
  c->sequence_loss = models::is_sequence_model(cfg.model);
  return c;
}

namespace {

/// FNV-1a over the bytes of every parameter value: equal on all replicas
/// exactly when their parameters are bitwise identical (up to collisions).
std::uint64_t params_digest(compute_state& c) {
  std::uint64_t h = 1469598103934665603ull;
  for (auto* p : c.parameters()) {
    const auto* bytes = static_cast<const unsigned char*>(p->value.raw_data());
    const auto n = p->value.nbytes();
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) { // a word at a time: the digest need not be FNV's
      std::uint64_t w;
      std::memcpy(&w, bytes + i, 8);
      h = (h ^ w) * 1099511628211ull;
    }
    for (; i < n; ++i)
      h = (h ^ bytes[i]) * 1099511628211ull;
  }
  return h;
}

std::int64_t total_numel(compute_state& c) {
  std::int64_t n = 0;
  for (auto* p : c.parameters())
    n += p->value.numel();
  return n;
}

} // namespace

std::optional<std::uint64_t> after_update(compute_state& c, std::int64_t step) {
  if (step == c.cfg.perturb_step)
    for (auto* p : c.parameters())
      if (p->value.numel() > 0) {
        p->value.mutable_data<float>()[0] += 1e-3f;
        break;
      }
  const auto every = c.cfg.check_replicas;
  if (every > 0 && (step + 1) % every == 0)
    return params_digest(c);
  return std::nullopt;
}

runtime::named_tensors collect_params(compute_state& c) {
  // Updated in the shared reduction, the parameters are written in place (no
  // copy on write): whoever keeps them gets a copy, taken between updates.
  const bool in_place = c.buckets.fused_sgd && c.buckets.shared;
  if (in_place && !c.buckets.shared->wait_for_updates(std::chrono::seconds(10)))
    throw std::runtime_error("the shared reduction's update did not end within 10 s");
  runtime::named_tensors r;
  for (auto* p : c.parameters()) {
    r.names.push_back(p->name);
    r.tensors.push_back(in_place ? p->value.clone() : p->value);
  }
  return r;
}

void load_params(compute_state& c, const runtime::named_tensors& in) {
  if (in.names.size() != in.tensors.size())
    throw runtime::input_error("parameter message with mismatched names and tensors");
  std::map<std::string, const tensor*> by_name;
  for (std::size_t i = 0; i < in.names.size(); ++i)
    by_name[in.names[i]] = &in.tensors[i];
  for (auto* p : c.parameters()) {
    auto it = by_name.find(p->name);
    if (it == by_name.end())
      throw runtime::input_error("parameter '" + p->name + "' missing");
    const auto& t = *it->second;
    if (t.type() != p->value.type() || t.shape() != p->value.shape())
      throw runtime::input_error("parameter '" + p->name + "' has shape " +
                                 runtime::to_string(t.shape()) + ", expected " +
                                 runtime::to_string(p->value.shape()));
    p->value = t;
  }
}

tensor flatten_values(compute_state& c) {
  auto out = tensor::empty(runtime::dtype::f32, {total_numel(c)});
  float* dst = out.mutable_data<float>();
  for (auto* p : c.parameters()) {
    std::copy_n(p->value.data<float>(), p->value.numel(), dst);
    dst += p->value.numel();
  }
  return out;
}

void load_flat_values(compute_state& c, const tensor& all) {
  const auto n = total_numel(c);
  if (all.numel() != n || all.type() != runtime::dtype::f32)
    throw runtime::input_error("broadcast parameters have " + std::to_string(all.numel()) +
                               " values, expected " + std::to_string(n));
  const float* src = all.data<float>();
  for (auto* p : c.parameters()) {
    auto v = tensor::empty(runtime::dtype::f32, p->value.shape());
    std::copy_n(src, p->value.numel(), v.mutable_data<float>());
    p->value = std::move(v);
    src += p->value.numel();
  }
}

runtime::named_tensors collect_optimizer_state(compute_state& c) {
  runtime::named_tensors r;
  for (const auto& [name, t] : c.opt->state()) {
    r.names.push_back(name);
    r.tensors.push_back(t);
  }
  r.meta_keys = {"steps"};
  r.meta_values = {std::to_string(c.opt->steps())};
  return r;
}

void load_optimizer_state(compute_state& c, const runtime::named_tensors& in) {
  std::int64_t steps = -1;
  for (std::size_t i = 0; i < in.meta_keys.size() && i < in.meta_values.size(); ++i)
    if (in.meta_keys[i] == "steps")
      steps = std::stoll(in.meta_values[i]);
  if (steps < 0)
    throw runtime::input_error("optimizer state without a step count");
  models::named_tensors state;
  for (std::size_t i = 0; i < in.names.size() && i < in.tensors.size(); ++i)
    state.emplace_back(in.names[i], in.tensors[i]);
  c.opt->load_state(c.parameters(), state, steps);
}

} // namespace troupe::actors
