#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "models/layers/layer.hpp"
#include "runtime/dtype.hpp"

namespace troupe::models {

/// What a model is, without weights: a name, the per-sample input shape and
/// dtype, and the layer specs (the JSON make_layer() takes). Every node of a
/// cluster can rebuild any range of layers from it, so stages and replicas
/// only need the spec and a seed.
///
/// JSON form: {"name": "mlp", "input_shape": [784], "input_dtype": "f32",
///             "layers": [{"type": "dense", "in": 784, "out": 1024}, ...]}
struct model_spec {
  std::string name;
  shape_t input_shape; ///< per sample, without the batch dimension
  runtime::dtype input_dtype = runtime::dtype::f32;
  std::vector<nlohmann::json> layers;

  /// Parses and validates (see validate()); layer specs are normalised to what
  /// the layers report (defaults filled in), so to_json(from_json(j)) is stable.
  static model_spec from_json(const nlohmann::json& j);
  nlohmann::json to_json() const;

  friend bool operator==(const model_spec&, const model_spec&) = default;
};

/// Checks that the layers can be built and that shapes and dtypes flow through
/// them (embedding only on i32 input, every other layer on f32). Returns the
/// per-sample shapes of the input and of each layer's output (layers.size() + 1
/// entries). Throws std::invalid_argument naming the offending layer.
std::vector<shape_t> activation_shapes(const model_spec& spec);
/// The validated per-sample output shape of the whole model.
shape_t output_shape(const model_spec& spec);
/// Forward FLOPs per sample of each layer (for partitioners).
std::vector<double> layer_flops(const model_spec& spec);
/// Number of scalar parameters of each layer.
std::vector<std::int64_t> layer_parameter_counts(const model_spec& spec);

/// Builds and initialises layers [begin, end) of the model (with their global
/// indices, so parameter names and values do not depend on the split).
/// Throws std::invalid_argument for an invalid spec or range.
std::vector<std::unique_ptr<layer>> instantiate(const model_spec& spec, std::size_t begin,
                                                std::size_t end, std::uint64_t seed);

/// nlohmann::json ADL hooks (json j = spec; spec = j.get<model_spec>()).
void to_json(nlohmann::json& j, const model_spec& spec);
void from_json(const nlohmann::json& j, model_spec& spec);

/// Fluent construction of a model_spec in C++:
///   model_builder("mlp").input({784}).dense(784, 1024).relu().dense(1024, 10).build()
/// build() validates like from_json.
class model_builder {
public:
  explicit model_builder(std::string name);

  model_builder& input(shape_t per_sample, runtime::dtype t = runtime::dtype::f32);
  model_builder& dense(std::int64_t in, std::int64_t out);
  model_builder& relu();
  model_builder& gelu();
  model_builder& conv2d(std::int64_t in_channels, std::int64_t out_channels, std::int64_t kernel,
                        std::int64_t stride = 1, std::int64_t padding = 0);
  /// stride 0 means stride = kernel.
  model_builder& maxpool2d(std::int64_t kernel, std::int64_t stride = 0);
  model_builder& flatten();
  model_builder& dropout(double p);
  model_builder& layer_norm(std::int64_t dim, double eps = 1e-5);
  model_builder& embedding(std::int64_t vocab, std::int64_t dim);
  model_builder& position_embedding(std::int64_t context, std::int64_t dim);
  model_builder& causal_self_attention(std::int64_t dim, std::int64_t heads);
  model_builder& transformer_block(std::int64_t dim, std::int64_t heads, std::int64_t hidden);
  /// Any registered layer type, as JSON.
  model_builder& add(nlohmann::json layer_spec);

  model_spec build() const;

private:
  model_spec spec_;
};

} // namespace troupe::models
