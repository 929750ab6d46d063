#include "actors/ps/ps_client.hpp"

#include <map>
#include <stdexcept>
#include <string>
#include <utility>

#include <caf/send.hpp>

#include "runtime/error.hpp"
#include "runtime/net/transport/courier.hpp"

namespace troupe::actors {

namespace {

using runtime::input_error;
using runtime::tensor;

std::string worker_label(std::int32_t stage, std::int32_t worker) {
  return "ps client of stage " + std::to_string(stage) + " (worker " + std::to_string(worker) + ")";
}

} // namespace

ps_client::ps_client(std::int32_t stage, std::int32_t worker, ps_assignment assignment,
                     std::vector<caf::actor> shards,
                     std::shared_ptr<runtime::transport::courier> courier, caf::actor self)
    : stage_(stage), worker_(worker), assignment_(std::move(assignment)),
      shards_(std::move(shards)), courier_(std::move(courier)), self_(std::move(self)) {
  if (static_cast<int>(shards_.size()) != assignment_.shards)
    throw input_error(worker_label(stage_, worker_) + ": " + std::to_string(shards_.size()) +
                      " ps shard actors for an assignment of " +
                      std::to_string(assignment_.shards));
  holders_ = assignment_.shards_of_stage(stage_);
  for (int s : holders_)
    if (!shards_[static_cast<std::size_t>(s)])
      throw input_error(worker_label(stage_, worker_) + ": no actor for ps shard " +
                        std::to_string(s));
  if (active() && !self_)
    throw input_error(worker_label(stage_, worker_) + ": no actor to receive the parameters");
  for (std::size_t i = 0; i < assignment_.params.size(); ++i)
    if (assignment_.params[i].stage == stage_)
      params_.push_back(i);
  replies_.resize(shards_.size());
  has_reply_.assign(shards_.size(), false);
  versions_.assign(shards_.size(), -1);
}

std::vector<models::parameter*> ps_client::match(std::span<models::parameter* const> params) const {
  std::map<std::string, models::parameter*> by_name;
  for (auto* p : params) {
    if (p == nullptr)
      throw input_error(worker_label(stage_, worker_) + ": a null parameter");
    if (!by_name.emplace(p->name, p).second)
      throw input_error(worker_label(stage_, worker_) + ": parameter '" + p->name +
                        "' appears twice");
  }
  std::vector<models::parameter*> out;
  for (auto i : params_) {
    const auto& info = assignment_.params[i];
    auto it = by_name.find(info.name);
    if (it == by_name.end())
      throw input_error(worker_label(stage_, worker_) + ": the stage has no parameter '" +
                        info.name + "' that the ps assignment places");
    const auto& v = it->second->value;
    if (!v.defined() || v.type() != runtime::dtype::f32 || v.numel() != info.numel)
      throw input_error(worker_label(stage_, worker_) + ": parameter '" + info.name + "' has " +
                        (v.defined() ? std::to_string(v.numel()) : std::string{"no"}) +
                        " elements, the ps assignment " + std::to_string(info.numel));
    out.push_back(it->second);
    by_name.erase(it);
  }
  if (!by_name.empty())
    throw input_error(worker_label(stage_, worker_) + ": parameter '" + by_name.begin()->first +
                      "' is not in the ps assignment of this stage");
  return out;
}

void ps_client::push(std::int64_t step, std::span<models::parameter* const> params, float lr,
                     float scale) {
  auto matched = match(params);
  std::map<std::string, const models::parameter*> by_name;
  for (const auto* p : matched)
    by_name.emplace(p->name, p);
  auto grad_of = [&](const std::string& name) -> tensor {
    const auto* p = by_name.at(name);
    if (p->grad_fresh || !p->grad.defined())
      return {}; // no gradient this step: zeros
    if (p->grad.numel() != p->value.numel())
      throw input_error(worker_label(stage_, worker_) + ": gradient of '" + name + "' has " +
                        std::to_string(p->grad.numel()) + " elements, the parameter " +
                        std::to_string(p->value.numel()));
    return p->grad;
  };
  for (int s : holders_) {
    actors::ps_msg m;
    m.kind = actors::ps_push;
    m.step = step;
    m.worker = worker_;
    m.stage = stage_;
    m.shard = s;
    m.lr = lr;
    m.scale = scale;
    m.data = flatten_pieces(assignment_.pieces_of(s, stage_), grad_of);
    bytes_pushed_ += m.data.nbytes();
    ++pushes_;
    runtime::transport::deliver(courier_, shards_[static_cast<std::size_t>(s)], std::move(m));
  }
}

void ps_client::request(std::int64_t step) {
  requested_ = step;
  answered_ = 0;
  for (auto& r : replies_)
    r = {};
  has_reply_.assign(shards_.size(), false);
  for (int s : holders_)
    caf::anon_send(shards_[static_cast<std::size_t>(s)], actors::ps_pull_atom::value, stage_,
                   worker_, step, self_);
}

bool ps_client::on_params(actors::ps_msg&& m) {
  auto what = [&] {
    return worker_label(stage_, worker_) + ": parameters from ps shard " + std::to_string(m.shard) +
           " for stage " + std::to_string(m.stage) + ", worker " + std::to_string(m.worker) +
           ", step " + std::to_string(m.step);
  };
  if (m.kind != actors::ps_params)
    throw input_error(what() + ": message kind " + std::to_string(m.kind) + ", not params");
  if (m.stage != stage_ || m.worker != worker_)
    throw input_error(what() + ": not this stage and worker");
  if (requested_ < 0 || m.step != requested_)
    throw input_error(what() + ": " +
                      (requested_ < 0 ? std::string{"nothing requested"}
                                      : "step " + std::to_string(requested_) + " requested"));
  if (m.shard < 0 || m.shard >= assignment_.shards ||
      assignment_.pieces_of(m.shard, stage_).empty())
    throw input_error(what() + ": that shard holds nothing of this stage");
  auto s = static_cast<std::size_t>(m.shard);
  if (has_reply_[s])
    throw input_error(what() + ": a second answer");
  const auto n = assignment_.numel_of(m.shard, stage_);
  if (!m.data.defined() || m.data.type() != runtime::dtype::f32 || m.data.numel() != n)
    throw input_error(what() + ": expected f32 [" + std::to_string(n) + "], got " +
                      (m.data.defined() ? std::string{runtime::to_string(m.data.type())} + " " +
                                              runtime::to_string(m.data.shape())
                                        : std::string{"no data"}));
  has_reply_[s] = true;
  replies_[s] = std::move(m);
  ++answered_;
  return ready();
}

void ps_client::apply(std::span<models::parameter* const> params) {
  if (!ready())
    throw std::logic_error(worker_label(stage_, worker_) +
                           ": apply before every ps shard answered");
  auto matched = match(params);
  // Fresh storage per parameter, filled by the pieces of every holder (the
  // pieces of a stage's parameters tile them, so every element is written).
  std::map<std::string, tensor> fresh;
  for (auto* p : matched)
    fresh.emplace(p->name, tensor::empty(runtime::dtype::f32, p->value.shape()));
  for (int s : holders_) {
    auto& r = replies_[static_cast<std::size_t>(s)];
    scatter_pieces(assignment_.pieces_of(s, stage_), r.data,
                   [&](const std::string& name) -> tensor& { return fresh.at(name); });
    versions_[static_cast<std::size_t>(s)] = r.version;
    bytes_pulled_ += r.data.nbytes();
    ++pulls_;
    r = {};
  }
  for (auto* p : matched)
    p->value = std::move(fresh.at(p->name));
  has_reply_.assign(shards_.size(), false);
  answered_ = 0;
  requested_ = -1;
}

} // namespace troupe::actors
