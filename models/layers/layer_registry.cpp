#include "models/layers/layer_registry.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <mutex>
#include <stdexcept>

#include "models/layers/causal_self_attention.hpp"
#include "models/layers/conv2d.hpp"
#include "models/layers/dense.hpp"
#include "models/layers/dropout.hpp"
#include "models/layers/embedding.hpp"
#include "models/layers/flatten.hpp"
#include "models/layers/gelu.hpp"
#include "models/layers/layer_norm.hpp"
#include "models/layers/maxpool2d.hpp"
#include "models/layers/position_embedding.hpp"
#include "models/layers/relu.hpp"
#include "models/layers/transformer_block.hpp"

namespace troupe::models {

namespace {

std::string where(const nlohmann::json& spec, std::size_t index) {
  std::string s = "layer " + std::to_string(index);
  if (spec.is_object()) {
    auto it = spec.find("type");
    if (it != spec.end() && it->is_string())
      s += " (" + it->get<std::string>() + ")";
  }
  return s;
}

[[noreturn]] void bad_field(const nlohmann::json& spec, std::size_t index, const char* field,
                            const std::string& what) {
  throw std::invalid_argument(where(spec, index) + ": field '" + field + "' " + what);
}

std::unique_ptr<layer> make_dense(const nlohmann::json& s, std::size_t i) {
  spec_allow_only(s, i, {"in", "out"});
  return std::make_unique<dense>(i, spec_int(s, i, "in", 1), spec_int(s, i, "out", 1));
}

std::unique_ptr<layer> make_conv2d(const nlohmann::json& s, std::size_t i) {
  spec_allow_only(s, i, {"in_channels", "out_channels", "kernel", "stride", "padding"});
  const std::int64_t one = 1, zero = 0;
  return std::make_unique<conv2d>(i, spec_int(s, i, "in_channels", 1),
                                  spec_int(s, i, "out_channels", 1), spec_int(s, i, "kernel", 1),
                                  spec_int(s, i, "stride", 1, &one),
                                  spec_int(s, i, "padding", 0, &zero));
}

std::unique_ptr<layer> make_maxpool2d(const nlohmann::json& s, std::size_t i) {
  spec_allow_only(s, i, {"kernel", "stride"});
  std::int64_t k = spec_int(s, i, "kernel", 1);
  return std::make_unique<maxpool2d>(i, k, spec_int(s, i, "stride", 1, &k));
}

std::unique_ptr<layer> make_dropout(const nlohmann::json& s, std::size_t i) {
  spec_allow_only(s, i, {"p"});
  return std::make_unique<dropout>(i, spec_number(s, i, "p", 0.0, 1.0, false));
}

std::unique_ptr<layer> make_layer_norm(const nlohmann::json& s, std::size_t i) {
  spec_allow_only(s, i, {"dim", "eps"});
  const double eps = 1e-5;
  double e = spec_number(s, i, "eps", 0.0, HUGE_VAL, false, &eps);
  if (!(e > 0.0))
    bad_field(s, i, "eps", "must be > 0");
  return std::make_unique<layer_norm>(i, spec_int(s, i, "dim", 1), e);
}

std::unique_ptr<layer> make_embedding(const nlohmann::json& s, std::size_t i) {
  spec_allow_only(s, i, {"vocab", "dim"});
  return std::make_unique<embedding>(i, spec_int(s, i, "vocab", 1), spec_int(s, i, "dim", 1));
}

// Language-model layers: "position_embedding" {context, dim},
// "causal_self_attention" {dim, heads}, "transformer_block" {dim, heads,
// hidden}; heads must divide dim.
std::unique_ptr<layer> make_position_embedding(const nlohmann::json& s, std::size_t i) {
  spec_allow_only(s, i, {"context", "dim"});
  return std::make_unique<position_embedding>(i, spec_int(s, i, "context", 1),
                                              spec_int(s, i, "dim", 1));
}

/// The 'heads' field, which must divide dim (head_dim = dim / heads).
std::int64_t heads_field(const nlohmann::json& s, std::size_t i, std::int64_t dim) {
  std::int64_t h = spec_int(s, i, "heads", 1);
  if (dim % h != 0)
    bad_field(s, i, "heads",
              "must divide dim " + std::to_string(dim) + ", got " + std::to_string(h));
  return h;
}

std::unique_ptr<layer> make_causal_self_attention(const nlohmann::json& s, std::size_t i) {
  spec_allow_only(s, i, {"dim", "heads"});
  std::int64_t dim = spec_int(s, i, "dim", 1);
  return std::make_unique<causal_self_attention>(i, dim, heads_field(s, i, dim));
}

std::unique_ptr<layer> make_transformer_block(const nlohmann::json& s, std::size_t i) {
  spec_allow_only(s, i, {"dim", "heads", "hidden"});
  std::int64_t dim = spec_int(s, i, "dim", 1);
  std::int64_t heads = heads_field(s, i, dim);
  return std::make_unique<transformer_block>(i, dim, heads, spec_int(s, i, "hidden", 1));
}

template <class L>
std::unique_ptr<layer> make_plain(const nlohmann::json& s, std::size_t i) {
  spec_allow_only(s, i, {});
  return std::make_unique<L>(i);
}

struct registry {
  std::mutex mutex;
  std::map<std::string, layer_factory> factories{
      {"dense", make_dense},
      {"relu", make_plain<relu>},
      {"gelu", make_plain<gelu>},
      {"conv2d", make_conv2d},
      {"maxpool2d", make_maxpool2d},
      {"flatten", make_plain<flatten>},
      {"dropout", make_dropout},
      {"layer_norm", make_layer_norm},
      {"embedding", make_embedding},
      {"position_embedding", make_position_embedding},
      {"causal_self_attention", make_causal_self_attention},
      {"transformer_block", make_transformer_block}};
};

registry& the_registry() {
  static registry r;
  return r;
}

} // namespace

std::int64_t spec_int(const nlohmann::json& spec, std::size_t index, const char* field,
                      std::int64_t min, const std::int64_t* fallback) {
  auto it = spec.find(field);
  if (it == spec.end()) {
    if (fallback)
      return *fallback;
    bad_field(spec, index, field, "is missing");
  }
  if (it->is_number_unsigned()) {
    auto v = it->get<std::uint64_t>();
    if (v > static_cast<std::uint64_t>(INT64_MAX))
      bad_field(spec, index, field, "is out of range: " + it->dump());
  } else if (!it->is_number_integer()) {
    bad_field(spec, index, field, "must be an integer, got " + it->dump());
  }
  auto v = it->get<std::int64_t>();
  if (v < min)
    bad_field(spec, index, field, "must be >= " + std::to_string(min) + ", got " + it->dump());
  return v;
}

double spec_number(const nlohmann::json& spec, std::size_t index, const char* field, double min,
                   double max, bool max_inclusive, const double* fallback) {
  auto it = spec.find(field);
  if (it == spec.end()) {
    if (fallback)
      return *fallback;
    bad_field(spec, index, field, "is missing");
  }
  if (!it->is_number())
    bad_field(spec, index, field, "must be a number, got " + it->dump());
  double v = it->get<double>();
  if (!(v >= min) || !(max_inclusive ? v <= max : v < max))
    bad_field(spec, index, field,
              "must be in [" + std::to_string(min) + ", " + std::to_string(max) +
                  (max_inclusive ? "]" : ")") + ", got " + it->dump());
  return v;
}

void spec_allow_only(const nlohmann::json& spec, std::size_t index,
                     std::initializer_list<const char*> allowed) {
  for (auto it = spec.begin(); it != spec.end(); ++it) {
    if (it.key() == "type")
      continue;
    bool ok =
        std::any_of(allowed.begin(), allowed.end(), [&](const char* a) { return it.key() == a; });
    if (!ok)
      throw std::invalid_argument(where(spec, index) + ": unknown field '" + it.key() + "'");
  }
}

std::unique_ptr<layer> make_layer(const nlohmann::json& spec, std::size_t index) {
  if (!spec.is_object())
    throw std::invalid_argument("layer " + std::to_string(index) +
                                ": spec must be a JSON object, got " + spec.dump());
  auto t = spec.find("type");
  if (t == spec.end())
    throw std::invalid_argument("layer " + std::to_string(index) + ": field 'type' is missing");
  if (!t->is_string())
    throw std::invalid_argument("layer " + std::to_string(index) +
                                ": field 'type' must be a string, got " + t->dump());
  const auto& type = t->get_ref<const std::string&>();
  layer_factory factory;
  {
    auto& r = the_registry();
    std::lock_guard lock(r.mutex);
    auto it = r.factories.find(type);
    if (it == r.factories.end()) {
      std::string known;
      for (const auto& [name, f] : r.factories)
        known += (known.empty() ? "" : ", ") + name;
      throw std::invalid_argument("layer " + std::to_string(index) + ": unknown type '" + type +
                                  "' (known: " + known + ")");
    }
    factory = it->second;
  }
  return factory(spec, index);
}

void register_layer(const std::string& type, layer_factory factory) {
  auto& r = the_registry();
  std::lock_guard lock(r.mutex);
  r.factories[type] = std::move(factory);
}

std::vector<std::string> layer_types() {
  auto& r = the_registry();
  std::lock_guard lock(r.mutex);
  std::vector<std::string> names;
  for (const auto& [name, f] : r.factories)
    names.push_back(name);
  return names;
}

} // namespace troupe::models
