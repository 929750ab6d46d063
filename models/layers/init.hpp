#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "models/layers/parameter.hpp"
#include "runtime/tensor.hpp"

namespace troupe::models {

/// Global parameter name "<layer index>.<leaf>", as torch.nn.Sequential names
/// them, so names do not depend on how the model is split into stages.
std::string parameter_name(std::size_t layer_index, const char* leaf);

/// A parameter of the given shape with an undefined gradient (allocated on the
/// first backward) and grad_fresh set.
parameter make_parameter(std::size_t layer_index, const char* leaf, runtime::shape_t shape,
                         bool decay);

/// Fills p.value from U(-bound, bound), drawn from rng_stream(seed,
/// hash_name(p.name)): the values depend only on the seed and the global name.
void init_uniform(parameter& p, std::uint64_t seed, float bound);
/// Fills p.value from N(0, 1) (torch.nn.Embedding's default), keyed like init_uniform.
void init_normal(parameter& p, std::uint64_t seed);
void init_constant(parameter& p, float value);
/// Sets every element of an f32 tensor to `value` (copy on write applies).
void fill(runtime::tensor& t, float value);

/// Makes p.grad a tensor of p.value's shape that backward may write, and says
/// whether backward must add to it (false: overwrite, grad_fresh was set).
/// A fresh gradient whose storage someone else still reads (e.g. an all-reduce
/// that was handed the previous step's gradient) gets a new buffer instead of a
/// copy-on-write copy that would be overwritten anyway; an in-place view (a
/// data-parallel bucket's range, tensor::in_place_view) is written as it is.
bool prepare_grad(parameter& p);

} // namespace troupe::models
