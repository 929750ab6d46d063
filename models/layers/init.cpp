#include "models/layers/init.hpp"

#include "runtime/rng.hpp"

namespace troupe::models {

std::string parameter_name(std::size_t layer_index, const char* leaf) {
  return std::to_string(layer_index) + "." + leaf;
}

parameter make_parameter(std::size_t layer_index, const char* leaf, runtime::shape_t shape,
                         bool decay) {
  parameter p;
  p.name = parameter_name(layer_index, leaf);
  p.value = runtime::tensor::zeros(runtime::dtype::f32, std::move(shape));
  p.grad_fresh = true;
  p.decay = decay;
  return p;
}

void init_uniform(parameter& p, std::uint64_t seed, float bound) {
  runtime::rng_stream rng(seed, runtime::hash_name(p.name));
  float* v = p.value.mutable_data<float>();
  for (std::int64_t i = 0; i < p.value.numel(); ++i)
    v[i] = rng.next_uniform(-bound, bound);
}

void init_normal(parameter& p, std::uint64_t seed) {
  runtime::rng_stream rng(seed, runtime::hash_name(p.name));
  float* v = p.value.mutable_data<float>();
  for (std::int64_t i = 0; i < p.value.numel(); ++i)
    v[i] = rng.next_normal();
}

void init_constant(parameter& p, float value) {
  fill(p.value, value);
}

void fill(runtime::tensor& t, float value) {
  float* v = t.mutable_data<float>();
  for (std::int64_t i = 0; i < t.numel(); ++i)
    v[i] = value;
}

bool prepare_grad(parameter& p) {
  bool usable =
      p.grad.defined() && p.grad.type() == runtime::dtype::f32 && p.grad.shape() == p.value.shape();
  if (!usable) {
    p.grad = runtime::tensor::empty(runtime::dtype::f32, p.value.shape());
    return false; // nothing to accumulate into
  }
  if (p.grad_fresh) {
    if (!p.grad.is_unique() && !p.grad.writes_in_place())
      p.grad = runtime::tensor::empty(runtime::dtype::f32, p.value.shape());
    return false;
  }
  return true;
}

} // namespace troupe::models
