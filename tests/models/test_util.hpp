#pragma once

// Helpers shared by the models tests.

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "models/layers/model_spec.hpp"
#include "runtime/rng.hpp"
#include "runtime/tensor.hpp"

namespace troupe::models::test {

using runtime::shape_t;
using runtime::tensor;

/// f32 tensor with values from U(lo, hi), keyed by `key` (reproducible).
inline tensor random_tensor(shape_t shape, std::uint64_t key, float lo = -1.f, float hi = 1.f) {
  auto t = tensor::empty(runtime::dtype::f32, std::move(shape));
  runtime::rng_stream rng(20240611, key);
  float* p = t.mutable_data<float>();
  for (std::int64_t i = 0; i < t.numel(); ++i)
    p[i] = rng.next_uniform(lo, hi);
  return t;
}

/// i32 tensor with values in [0, n).
inline tensor random_ids(shape_t shape, std::uint64_t key, std::int32_t n) {
  auto t = tensor::empty(runtime::dtype::i32, std::move(shape));
  runtime::rng_stream rng(20240611, key);
  auto* p = t.mutable_data<std::int32_t>();
  for (std::int64_t i = 0; i < t.numel(); ++i)
    p[i] = static_cast<std::int32_t>(rng.next_below(static_cast<std::uint64_t>(n)));
  return t;
}

/// Rows [begin, end) of a tensor along dimension 0 (a copy).
inline tensor rows(const tensor& t, std::int64_t begin, std::int64_t end) {
  shape_t s = t.shape();
  const std::int64_t per_row = t.numel() / s[0];
  s[0] = end - begin;
  auto r = tensor::empty(t.type(), s);
  const std::size_t row_bytes = static_cast<std::size_t>(per_row) * runtime::element_size(t.type());
  std::memcpy(r.mutable_raw_data(), static_cast<const char*>(t.raw_data()) + begin * row_bytes,
              static_cast<std::size_t>(end - begin) * row_bytes);
  return r;
}

/// sum(a * b) accumulated in double.
inline double dot(const tensor& a, const tensor& b) {
  auto x = a.values<float>();
  auto y = b.values<float>();
  double s = 0;
  for (std::size_t i = 0; i < x.size(); ++i)
    s += double(x[i]) * double(y[i]);
  return s;
}

/// A 3-layer MLP 33 -> 65 -> 17 -> 5 with ReLUs: widths that are not
/// multiples of a vector width, small enough for exact comparisons.
inline model_spec odd_widths_mlp(const std::string& name) {
  return model_builder(name)
      .input({33})
      .dense(33, 65)
      .relu()
      .dense(65, 17)
      .relu()
      .dense(17, 5)
      .build();
}

} // namespace troupe::models::test
