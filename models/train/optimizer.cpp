#include "models/train/optimizer.hpp"

#include <algorithm>
#include <set>
#include <stdexcept>

namespace troupe::models {

namespace kc = kernels::cpu;
using runtime::tensor;

// ---- optimizer ---------------------------------------------------------------

void optimizer::update(std::span<parameter* const> params, float lr) {
  std::vector<parameter*> rest;
  rest.reserve(params.size());
  for (parameter* p : params) {
    if (p->updated_in_backward)
      p->updated_in_backward = false;
    else
      rest.push_back(p);
  }
  const auto counted = steps_;
  step(rest, lr);
  steps_ = counted;
}

named_tensors optimizer::state() const {
  named_tensors out;
  const auto names = slot_names();
  for (const auto& [param, s] : state_)
    for (std::size_t i = 0; i < names.size() && i < s.tensors.size(); ++i)
      if (s.tensors[i].defined())
        out.emplace_back(param + "." + names[i], s.tensors[i]);
  return out;
}

void optimizer::load_state(std::span<parameter* const> params, const named_tensors& state,
                           std::int64_t steps) {
  auto fail = [this](const std::string& name, const std::string& what) {
    throw std::invalid_argument(kind() + " optimizer state '" + name + "': " + what);
  };
  if (steps < 0)
    throw std::invalid_argument(kind() + " optimizer: negative step count " +
                                std::to_string(steps));
  const auto names = slot_names();
  std::map<std::string, const parameter*> by_name;
  for (const parameter* p : params)
    by_name.emplace(p->name, p);

  // Validate everything before touching the current state.
  std::map<std::string, slots> fresh;
  for (const auto& [full, t] : state) {
    auto dot = full.rfind('.');
    if (dot == std::string::npos || dot == 0)
      fail(full, "expected '<parameter>.<state kind>'");
    std::string pname = full.substr(0, dot), kind_name = full.substr(dot + 1);
    auto slot = std::find(names.begin(), names.end(), kind_name);
    if (slot == names.end()) {
      std::string known;
      for (const auto& n : names)
        known += (known.empty() ? "" : ", ") + n;
      fail(full, "unknown state kind '" + kind_name + "' (this optimizer keeps: " +
                     (known.empty() ? std::string{"nothing"} : known) + ")");
    }
    auto p = by_name.find(pname);
    if (p == by_name.end())
      fail(full, "no parameter named '" + pname + "'");
    if (!t.defined() || t.type() != runtime::dtype::f32 || t.shape() != p->second->value.shape())
      fail(full, "expected f32 " + runtime::to_string(p->second->value.shape()) + ", got " +
                     (t.defined() ? std::string{runtime::to_string(t.type())} + " " +
                                        runtime::to_string(t.shape())
                                  : std::string{"an undefined tensor"}));
    auto& s = fresh[pname];
    s.tensors.resize(names.size());
    auto i = static_cast<std::size_t>(slot - names.begin());
    if (s.tensors[i].defined())
      fail(full, "appears twice");
    s.tensors[i] = t;
  }
  for (const auto& [pname, s] : fresh)
    for (std::size_t i = 0; i < names.size(); ++i)
      if (!s.tensors[i].defined())
        fail(pname + "." + names[i], "missing (the other state of '" + pname + "' is present)");
  state_ = std::move(fresh);
  steps_ = steps;
}

void optimizer::reset() {
  state_.clear();
  steps_ = 0;
}

optimizer::slots& optimizer::slots_of(const parameter& p, std::size_t count) {
  auto& s = state_[p.name];
  if (s.tensors.size() != count)
    s.tensors.resize(count);
  return s;
}

bool optimizer::has_usable_grad(const parameter& p) {
  if (!p.grad.defined())
    return false;
  if (p.value.type() != runtime::dtype::f32 || p.grad.type() != runtime::dtype::f32 ||
      p.grad.shape() != p.value.shape())
    throw std::invalid_argument("optimizer: parameter '" + p.name + "' value " +
                                runtime::to_string(p.value.shape()) + " and gradient " +
                                runtime::to_string(p.grad.shape()) + " must be f32 of one shape");
  return true;
}

// ---- sgd ---------------------------------------------------------------------

sgd::sgd(kc::sgd_options o) : options_(o) {
  if (!(o.lr >= 0.f) || !(o.momentum >= 0.f) || !(o.weight_decay >= 0.f))
    throw std::invalid_argument("sgd: lr, momentum and weight_decay must be >= 0");
}

nlohmann::json sgd::config() const {
  return {{"type", "sgd"},
          {"lr", options_.lr},
          {"momentum", options_.momentum},
          {"weight_decay", options_.weight_decay}};
}

std::vector<std::string> sgd::slot_names() const {
  if (options_.momentum == 0.f)
    return {};
  return {"momentum_buffer"};
}

void sgd::step(std::span<parameter* const> params, float lr) {
  for (parameter* p : params) {
    if (!has_usable_grad(*p))
      continue;
    kc::sgd_options o = options_;
    o.lr = lr;
    if (!p->decay)
      o.weight_decay = 0.f;
    const float* g = p->grad.data<float>();
    float* v = p->value.mutable_data<float>();
    if (o.momentum == 0.f) {
      kc::sgd_update(v, g, nullptr, p->value.numel(), o, true);
      continue;
    }
    auto& buf = slots_of(*p, 1).tensors[0];
    const bool first = !buf.defined();
    if (first)
      buf = tensor::empty(runtime::dtype::f32, p->value.shape()); // the kernel copies g in
    kc::sgd_update(v, g, buf.mutable_data<float>(), p->value.numel(), o, first);
  }
  ++steps_;
}

// ---- adam --------------------------------------------------------------------

adam::adam(kc::adam_options o) : options_(o) {
  if (!(o.lr >= 0.f) || !(o.beta1 >= 0.f && o.beta1 < 1.f) || !(o.beta2 >= 0.f && o.beta2 < 1.f) ||
      !(o.eps > 0.f) || !(o.weight_decay >= 0.f))
    throw std::invalid_argument(
        "adam: needs lr >= 0, betas in [0, 1), eps > 0 and weight_decay >= 0");
}

nlohmann::json adam::config() const {
  return {{"type", kind()},
          {"lr", options_.lr},
          {"betas", {options_.beta1, options_.beta2}},
          {"eps", options_.eps},
          {"weight_decay", options_.weight_decay}};
}

void adam::step(std::span<parameter* const> params, float lr) {
  const std::int64_t t = steps_ + 1;
  for (parameter* p : params) {
    if (!has_usable_grad(*p))
      continue;
    kc::adam_options o = options_;
    o.lr = lr;
    if (!p->decay)
      o.weight_decay = 0.f;
    auto& s = slots_of(*p, 2);
    if (!s.tensors[0].defined()) {
      s.tensors[0] = tensor::zeros(runtime::dtype::f32, p->value.shape());
      s.tensors[1] = tensor::zeros(runtime::dtype::f32, p->value.shape());
    }
    kc::adam_update(p->value.mutable_data<float>(), p->grad.data<float>(),
                    s.tensors[0].mutable_data<float>(), s.tensors[1].mutable_data<float>(),
                    p->value.numel(), o, t);
  }
  steps_ = t;
}

// ---- factory -----------------------------------------------------------------

namespace {

float number_field(const nlohmann::json& c, const char* field, float fallback, float min, float max,
                   bool max_inclusive) {
  auto it = c.find(field);
  if (it == c.end())
    return fallback;
  if (!it->is_number())
    throw std::invalid_argument(std::string{"optimizer config: '"} + field +
                                "' must be a number, got " + it->dump());
  double v = it->get<double>();
  if (!(v >= min) || !(max_inclusive ? v <= max : v < max))
    throw std::invalid_argument(std::string{"optimizer config: '"} + field +
                                "' out of range: " + it->dump());
  return static_cast<float>(v);
}

} // namespace

std::unique_ptr<optimizer> make_optimizer(const nlohmann::json& c) {
  if (!c.is_object())
    throw std::invalid_argument("optimizer config must be a JSON object, got " + c.dump());
  auto t = c.find("type");
  if (t == c.end() || !t->is_string())
    throw std::invalid_argument("optimizer config: 'type' must be \"sgd\", \"adam\" or \"adamw\"");
  const auto type = t->get<std::string>();
  const bool is_sgd = type == "sgd";
  if (!is_sgd && type != "adam" && type != "adamw")
    throw std::invalid_argument("optimizer config: unknown type '" + type +
                                "' (known: sgd, adam, adamw)");
  const std::set<std::string> allowed =
      is_sgd ? std::set<std::string>{"type", "lr", "momentum", "weight_decay"}
             : std::set<std::string>{"type", "lr", "betas", "eps", "weight_decay"};
  for (auto it = c.begin(); it != c.end(); ++it)
    if (!allowed.count(it.key()))
      throw std::invalid_argument("optimizer config: unknown field '" + it.key() + "' for " + type);
  constexpr float inf = 3.4e38f;
  if (is_sgd) {
    kc::sgd_options o;
    o.lr = number_field(c, "lr", 0.01f, 0.f, inf, true);
    o.momentum = number_field(c, "momentum", 0.f, 0.f, 1.f, true);
    o.weight_decay = number_field(c, "weight_decay", 0.f, 0.f, inf, true);
    return std::make_unique<sgd>(o);
  }
  kc::adam_options o;
  o.decoupled = type == "adamw";
  o.lr = number_field(c, "lr", 1e-3f, 0.f, inf, true);
  o.eps = number_field(c, "eps", 1e-8f, 0.f, inf, true);
  if (!(o.eps > 0.f))
    throw std::invalid_argument("optimizer config: 'eps' must be > 0");
  o.weight_decay = number_field(c, "weight_decay", o.decoupled ? 1e-2f : 0.f, 0.f, inf, true);
  if (auto b = c.find("betas"); b != c.end()) {
    if (!b->is_array() || b->size() != 2 || !(*b)[0].is_number() || !(*b)[1].is_number())
      throw std::invalid_argument("optimizer config: 'betas' must be [beta1, beta2], got " +
                                  b->dump());
    for (int i = 0; i < 2; ++i) {
      double v = (*b)[static_cast<std::size_t>(i)].get<double>();
      if (!(v >= 0.0 && v < 1.0))
        throw std::invalid_argument("optimizer config: 'betas' must be in [0, 1), got " +
                                    b->dump());
    }
    o.beta1 = (*b)[0].get<float>();
    o.beta2 = (*b)[1].get<float>();
  }
  return std::make_unique<adam>(o);
}

} // namespace troupe::models
