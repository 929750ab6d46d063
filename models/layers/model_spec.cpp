#include "models/layers/model_spec.hpp"

#include <stdexcept>

#include "models/layers/layer_registry.hpp"

namespace troupe::models {

namespace {

[[noreturn]] void bad_spec(const std::string& what) {
  throw std::invalid_argument("model spec: " + what);
}

struct checked {
  std::vector<shape_t> shapes;
  std::vector<std::unique_ptr<layer>> layers; // built (not initialised)
};

checked check(const model_spec& spec) {
  if (spec.input_shape.empty())
    bad_spec("input_shape must have at least one dimension");
  for (auto d : spec.input_shape)
    if (d < 1)
      bad_spec("input_shape " + runtime::to_string(spec.input_shape) + " has an extent < 1");
  checked c;
  c.shapes.push_back(spec.input_shape);
  runtime::dtype t = spec.input_dtype;
  for (std::size_t i = 0; i < spec.layers.size(); ++i) {
    auto l = make_layer(spec.layers[i], i);
    const bool takes_ids = l->kind() == "embedding";
    const runtime::dtype want = takes_ids ? runtime::dtype::i32 : runtime::dtype::f32;
    if (t != want)
      throw std::invalid_argument("layer " + std::to_string(i) + " (" + l->kind() + "): takes " +
                                  std::string{runtime::to_string(want)} + " input but gets " +
                                  std::string{runtime::to_string(t)});
    try {
      c.shapes.push_back(l->output_shape(c.shapes.back()));
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument("layer " + std::to_string(i) + " (" + l->kind() +
                                  "): input shape " + runtime::to_string(c.shapes.back()) +
                                  " does not fit: " + e.what());
    }
    t = runtime::dtype::f32;
    c.layers.push_back(std::move(l));
  }
  return c;
}

} // namespace

std::vector<shape_t> activation_shapes(const model_spec& spec) {
  return check(spec).shapes;
}

shape_t output_shape(const model_spec& spec) {
  return check(spec).shapes.back();
}

std::vector<double> layer_flops(const model_spec& spec) {
  auto c = check(spec);
  std::vector<double> f;
  for (std::size_t i = 0; i < c.layers.size(); ++i)
    f.push_back(c.layers[i]->forward_flops(c.shapes[i]));
  return f;
}

std::vector<std::int64_t> layer_parameter_counts(const model_spec& spec) {
  auto c = check(spec);
  std::vector<std::int64_t> n;
  for (auto& l : c.layers) {
    std::int64_t k = 0;
    for (auto& p : l->parameters())
      k += p.value.numel();
    n.push_back(k);
  }
  return n;
}

model_spec model_spec::from_json(const nlohmann::json& j) {
  if (!j.is_object())
    bad_spec("expected a JSON object, got " + j.dump());
  for (auto it = j.begin(); it != j.end(); ++it)
    if (it.key() != "name" && it.key() != "input_shape" && it.key() != "input_dtype" &&
        it.key() != "layers")
      bad_spec("unknown field '" + it.key() + "'");
  model_spec s;
  auto name = j.find("name");
  if (name == j.end() || !name->is_string())
    bad_spec("field 'name' must be a string");
  s.name = name->get<std::string>();

  auto shape = j.find("input_shape");
  if (shape == j.end() || !shape->is_array())
    bad_spec("field 'input_shape' must be an array of positive integers");
  for (const auto& d : *shape) {
    if (!d.is_number_integer() || d.get<std::int64_t>() < 1)
      bad_spec("field 'input_shape' must be an array of positive integers, got " + shape->dump());
    s.input_shape.push_back(d.get<std::int64_t>());
  }

  auto dt = j.find("input_dtype");
  if (dt != j.end()) {
    if (!dt->is_string())
      bad_spec("field 'input_dtype' must be a string");
    auto parsed = runtime::parse_dtype(dt->get<std::string>());
    if (!parsed)
      bad_spec("field 'input_dtype': unknown dtype '" + dt->get<std::string>() + "'");
    s.input_dtype = *parsed;
  }

  auto layers = j.find("layers");
  if (layers == j.end() || !layers->is_array())
    bad_spec("field 'layers' must be an array of layer objects");
  for (const auto& l : *layers)
    s.layers.push_back(l);

  auto c = check(s);
  for (std::size_t i = 0; i < c.layers.size(); ++i)
    s.layers[i] = c.layers[i]->spec();
  return s;
}

nlohmann::json model_spec::to_json() const {
  return {{"name", name},
          {"input_shape", input_shape},
          {"input_dtype", std::string{runtime::to_string(input_dtype)}},
          {"layers", layers}};
}

void to_json(nlohmann::json& j, const model_spec& spec) {
  j = spec.to_json();
}
void from_json(const nlohmann::json& j, model_spec& spec) {
  spec = model_spec::from_json(j);
}

std::vector<std::unique_ptr<layer>> instantiate(const model_spec& spec, std::size_t begin,
                                                std::size_t end, std::uint64_t seed) {
  if (begin > end || end > spec.layers.size())
    throw std::invalid_argument("instantiate: layer range [" + std::to_string(begin) + ", " +
                                std::to_string(end) + ") outside the " +
                                std::to_string(spec.layers.size()) + " layers of model '" +
                                spec.name + "'");
  auto c = check(spec);
  std::vector<std::unique_ptr<layer>> out;
  out.reserve(end - begin);
  for (std::size_t i = begin; i < end; ++i) {
    c.layers[i]->init(seed);
    out.push_back(std::move(c.layers[i]));
  }
  return out;
}

model_builder::model_builder(std::string name) {
  spec_.name = std::move(name);
}

model_builder& model_builder::input(shape_t per_sample, runtime::dtype t) {
  spec_.input_shape = std::move(per_sample);
  spec_.input_dtype = t;
  return *this;
}

model_builder& model_builder::dense(std::int64_t in, std::int64_t out) {
  return add({{"type", "dense"}, {"in", in}, {"out", out}});
}
model_builder& model_builder::relu() {
  return add({{"type", "relu"}});
}
model_builder& model_builder::gelu() {
  return add({{"type", "gelu"}});
}
model_builder& model_builder::conv2d(std::int64_t in_channels, std::int64_t out_channels,
                                     std::int64_t kernel, std::int64_t stride,
                                     std::int64_t padding) {
  return add({{"type", "conv2d"},
              {"in_channels", in_channels},
              {"out_channels", out_channels},
              {"kernel", kernel},
              {"stride", stride},
              {"padding", padding}});
}
model_builder& model_builder::maxpool2d(std::int64_t kernel, std::int64_t stride) {
  return add(
      {{"type", "maxpool2d"}, {"kernel", kernel}, {"stride", stride == 0 ? kernel : stride}});
}
model_builder& model_builder::flatten() {
  return add({{"type", "flatten"}});
}
model_builder& model_builder::dropout(double p) {
  return add({{"type", "dropout"}, {"p", p}});
}
model_builder& model_builder::layer_norm(std::int64_t dim, double eps) {
  return add({{"type", "layer_norm"}, {"dim", dim}, {"eps", eps}});
}
model_builder& model_builder::embedding(std::int64_t vocab, std::int64_t dim) {
  return add({{"type", "embedding"}, {"vocab", vocab}, {"dim", dim}});
}
model_builder& model_builder::position_embedding(std::int64_t context, std::int64_t dim) {
  return add({{"type", "position_embedding"}, {"context", context}, {"dim", dim}});
}
model_builder& model_builder::causal_self_attention(std::int64_t dim, std::int64_t heads) {
  return add({{"type", "causal_self_attention"}, {"dim", dim}, {"heads", heads}});
}
model_builder& model_builder::transformer_block(std::int64_t dim, std::int64_t heads,
                                                std::int64_t hidden) {
  return add({{"type", "transformer_block"}, {"dim", dim}, {"heads", heads}, {"hidden", hidden}});
}
model_builder& model_builder::add(nlohmann::json layer_spec) {
  spec_.layers.push_back(std::move(layer_spec));
  return *this;
}

model_spec model_builder::build() const {
  return model_spec::from_json(spec_.to_json());
}

} // namespace troupe::models
