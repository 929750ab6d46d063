#include "actors/pipeline/dataset.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "kernels/cpu/elementwise.hpp"
#include "runtime/error.hpp"

namespace troupe::actors {

namespace {

/// Rows of a [N, ...] tensor, with how many values each holds.
struct rows {
  runtime::tensor t;
  std::int64_t width = 0;
  runtime::shape_t row_shape() const { return {t.shape().begin() + 1, t.shape().end()}; }
};

/// Copies rows `indices` of `src` (element size `elem`) into `dst`.
void gather(const rows& src, std::span<const std::int32_t> indices, std::size_t elem, void* dst) {
  const auto bytes = static_cast<std::size_t>(src.width) * elem;
  const auto* base = static_cast<const char*>(src.t.raw_data());
  auto* out = static_cast<char*>(dst);
  for (std::size_t i = 0; i < indices.size(); ++i)
    std::memcpy(out + i * bytes, base + static_cast<std::size_t>(indices[i]) * bytes, bytes);
}

class memory_source final : public dataset_source {
public:
  memory_source(runtime::tensor x, runtime::tensor y) {
    const auto n = x.dim(0);
    x_ = {std::move(x), 0};
    y_ = {std::move(y), 0};
    x_.width = n ? x_.t.numel() / n : 0;
    y_.width = n ? y_.t.numel() / n : 0;
  }
  std::int64_t size() const override { return x_.t.dim(0); }
  runtime::shape_t sample_shape() const override { return x_.row_shape(); }
  runtime::dtype sample_dtype() const override { return x_.t.type(); }
  runtime::shape_t target_shape() const override { return y_.row_shape(); }
  runtime::dtype target_dtype() const override {
    return y_.t.type() == runtime::dtype::u8 ? runtime::dtype::i32 : y_.t.type();
  }
  std::pair<runtime::tensor, runtime::tensor>
  read(std::span<const std::int32_t> indices) const override {
    const auto n = static_cast<std::int64_t>(indices.size());
    runtime::shape_t xs{n}, ys{n};
    auto sx = sample_shape(), sy = target_shape();
    xs.insert(xs.end(), sx.begin(), sx.end());
    ys.insert(ys.end(), sy.begin(), sy.end());
    auto x = runtime::tensor::empty(x_.t.type(), xs);
    auto y = runtime::tensor::empty(target_dtype(), ys);
    gather(x_, indices, runtime::element_size(x_.t.type()), x.mutable_raw_data());
    if (y_.t.type() == runtime::dtype::u8) { // labels stored as bytes (IDX)
      const auto* lab = y_.t.data<std::uint8_t>();
      auto* out = y.mutable_data<std::int32_t>();
      for (std::int64_t i = 0; i < n; ++i)
        for (std::int64_t k = 0; k < y_.width; ++k)
          out[i * y_.width + k] = lab[indices[static_cast<std::size_t>(i)] * y_.width + k];
    } else {
      gather(y_, indices, runtime::element_size(y_.t.type()), y.mutable_raw_data());
    }
    return {std::move(x), std::move(y)};
  }

private:
  rows x_, y_;
};

/// Rows [begin, begin + count) of another source.
class slice_source final : public dataset_source {
public:
  slice_source(std::shared_ptr<const dataset_source> s, std::int64_t begin, std::int64_t count)
      : s_(std::move(s)), begin_(begin), count_(count) {}
  std::int64_t size() const override { return count_; }
  runtime::shape_t sample_shape() const override { return s_->sample_shape(); }
  runtime::dtype sample_dtype() const override { return s_->sample_dtype(); }
  runtime::shape_t target_shape() const override { return s_->target_shape(); }
  runtime::dtype target_dtype() const override { return s_->target_dtype(); }
  std::pair<runtime::tensor, runtime::tensor>
  read(std::span<const std::int32_t> indices) const override {
    std::vector<std::int32_t> moved(indices.begin(), indices.end());
    for (auto& i : moved)
      i += static_cast<std::int32_t>(begin_);
    return s_->read(moved);
  }

private:
  std::shared_ptr<const dataset_source> s_;
  std::int64_t begin_, count_;
};

bool one_of(runtime::dtype t, std::initializer_list<runtime::dtype> ok) {
  return std::find(ok.begin(), ok.end(), t) != ok.end();
}

} // namespace

dataset memory_dataset(std::string name, runtime::tensor samples, runtime::tensor targets) {
  using runtime::dtype;
  if (!samples.defined() || !targets.defined() || samples.rank() < 1 || targets.rank() < 1)
    throw runtime::input_error(name + ": samples and targets must both be [N, ...] tensors");
  if (samples.dim(0) != targets.dim(0))
    throw runtime::input_error(name + ": " + std::to_string(samples.dim(0)) + " samples but " +
                               std::to_string(targets.dim(0)) + " targets");
  if (!one_of(samples.type(), {dtype::u8, dtype::i32, dtype::f32}))
    throw runtime::input_error(name + ": samples of dtype " +
                               std::string{runtime::to_string(samples.type())} +
                               " (u8, i32 or f32 wanted)");
  if (!one_of(targets.type(), {dtype::u8, dtype::i32, dtype::f32}))
    throw runtime::input_error(name + ": targets of dtype " +
                               std::string{runtime::to_string(targets.type())} +
                               " (u8 or i32 labels, or f32 values wanted)");
  if (samples.dim(0) > std::int64_t{INT32_MAX})
    throw runtime::input_error(name + ": more than 2^31 samples");
  return {std::move(name), std::make_shared<memory_source>(std::move(samples), std::move(targets))};
}

dataset slice(const dataset& d, std::int64_t begin, std::int64_t end, std::string name) {
  if (begin < 0 || end < begin || end > d.size())
    throw std::invalid_argument("slice: rows [" + std::to_string(begin) + ", " +
                                std::to_string(end) + ") of " + std::to_string(d.size()));
  return {std::move(name), std::make_shared<slice_source>(d.source, begin, end - begin)};
}

input_transform no_transform(std::string_view source_dtype) {
  input_transform t;
  t.description = {{"formula", "x"}, {"source_dtype", source_dtype}};
  return t;
}

input_transform divide_by(double divisor, std::string_view source_dtype) {
  input_transform t;
  t.shift = {0.f};
  t.scale = {1.0f / static_cast<float>(divisor)}; // 1.0f / 255.0f, as always
  // The MNIST default keeps the manifest text it always had.
  t.description = {
      {"formula", divisor == 255 ? std::string{"x / 255"} : "x / " + std::to_string(divisor)},
      {"scale", 1.0 / divisor},
      {"offset", 0.0},
      {"source_dtype", source_dtype}};
  return t;
}

input_transform standardize(double mean, double std, std::string_view source_dtype) {
  input_transform t;
  t.shift = {static_cast<float>(mean)};
  t.scale = {1.0f / static_cast<float>(std)};
  t.description = {{"formula", "(x - mean) / std"},
                   {"mean", mean},
                   {"std", std},
                   {"source_dtype", source_dtype}};
  return t;
}

input_transform standardize_per_feature(const dataset& d) {
  const auto n = d.size();
  const auto feature = runtime::shape_numel(d.source->sample_shape());
  const auto type = d.source->sample_dtype();
  std::vector<double> sum(static_cast<std::size_t>(feature)), sq(sum.size());
  constexpr std::int64_t chunk = 4096;
  std::vector<std::int32_t> idx;
  std::vector<float> buf;
  input_transform as_is; // converts to f32 only
  for (std::int64_t b = 0; b < n; b += chunk) {
    const auto m = std::min(chunk, n - b);
    idx.resize(static_cast<std::size_t>(m));
    std::iota(idx.begin(), idx.end(), static_cast<std::int32_t>(b));
    auto [x, y] = d.source->read(idx);
    buf.resize(static_cast<std::size_t>(m * feature));
    transform_inputs(as_is, type, x.raw_data(), buf.data(), m, feature);
    for (std::int64_t i = 0; i < m; ++i)
      for (std::int64_t f = 0; f < feature; ++f) {
        const double v = buf[static_cast<std::size_t>(i * feature + f)];
        sum[static_cast<std::size_t>(f)] += v;
        sq[static_cast<std::size_t>(f)] += v * v;
      }
  }
  input_transform t;
  auto means = nlohmann::json::array(), stds = nlohmann::json::array();
  for (std::size_t f = 0; f < sum.size(); ++f) {
    const double mean = n ? sum[f] / double(n) : 0;
    const double var = n ? std::max(0.0, sq[f] / double(n) - mean * mean) : 0;
    const double sd = std::sqrt(var);
    t.shift.push_back(static_cast<float>(mean));
    t.scale.push_back(sd > 0 ? static_cast<float>(1.0 / sd) : 1.f);
    means.push_back(mean);
    stds.push_back(sd > 0 ? sd : 1.0);
  }
  t.description = {{"formula", "(x - mean[f]) / std[f]"},
                   {"computed_on", d.name},
                   {"mean", means},
                   {"std", stds},
                   {"source_dtype", runtime::to_string(type)}};
  return t;
}

void transform_inputs(const input_transform& t, runtime::dtype type, const void* src, float* dst,
                      std::int64_t count, std::int64_t feature) {
  const auto total = count * feature;
  const bool scalar = t.shift.size() <= 1 && t.scale.size() <= 1;
  if (type == runtime::dtype::u8 && scalar && (t.shift.empty() || t.shift[0] == 0.f)) {
    // x * s: the kernel the MNIST loader always used (bitwise as before).
    kernels::cpu::u8_to_f32(static_cast<const std::uint8_t*>(src), dst,
                            t.scale.empty() ? 1.f : t.scale[0], total);
    return;
  }
  auto value = [&](std::int64_t i) -> float {
    switch (type) {
    case runtime::dtype::u8:
      return static_cast<float>(static_cast<const std::uint8_t*>(src)[i]);
    case runtime::dtype::i32:
      return static_cast<float>(static_cast<const std::int32_t*>(src)[i]);
    default:
      return static_cast<const float*>(src)[i];
    }
  };
  if (t.identity()) {
    for (std::int64_t i = 0; i < total; ++i)
      dst[i] = value(i);
    return;
  }
  for (std::int64_t i = 0; i < total; ++i) {
    const auto f = static_cast<std::size_t>(i % feature);
    const float shift = t.shift.size() == 1 ? t.shift[0] : t.shift[f];
    const float scale = t.scale.size() == 1 ? t.scale[0] : t.scale[f];
    dst[i] = (value(i) - shift) * scale;
  }
}

} // namespace troupe::actors
