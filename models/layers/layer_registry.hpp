#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "models/layers/layer.hpp"

namespace troupe::models {

/// Builds the layer described by `spec` (an object with a "type" field) as
/// layer `index` of a model:
///   "dense" {in, out}, "relu", "gelu",
///   "conv2d" {in_channels, out_channels, kernel, stride = 1, padding = 0},
///   "maxpool2d" {kernel, stride = kernel}, "flatten", "dropout" {p},
///   "layer_norm" {dim, eps = 1e-5}, "embedding" {vocab, dim}.
/// Parameters are allocated, not initialised (call init(seed)). Unknown types,
/// missing, ill-typed, out-of-range or unknown fields throw
/// std::invalid_argument naming the layer index and the field.
std::unique_ptr<layer> make_layer(const nlohmann::json& spec, std::size_t index);

/// A factory gets the spec (already known to be an object with the registered
/// type) and the layer index. Registering an existing type replaces it.
using layer_factory = std::function<std::unique_ptr<layer>(const nlohmann::json&, std::size_t)>;
void register_layer(const std::string& type, layer_factory factory);

/// Registered type names, sorted.
std::vector<std::string> layer_types();

/// Field readers for factories: throw std::invalid_argument
/// "layer <index> (<type>): field '<field>' ..." when the field is missing
/// (and has no default), has the wrong JSON type or is out of range.
std::int64_t spec_int(const nlohmann::json& spec, std::size_t index, const char* field,
                      std::int64_t min, const std::int64_t* fallback = nullptr);
double spec_number(const nlohmann::json& spec, std::size_t index, const char* field, double min,
                   double max, bool max_inclusive, const double* fallback = nullptr);
/// Rejects fields other than "type" and `allowed` (catches typos like "kernal").
void spec_allow_only(const nlohmann::json& spec, std::size_t index,
                     std::initializer_list<const char*> allowed);

} // namespace troupe::models
