#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/tensor.hpp"

namespace troupe::actors {

/// Where a loader's samples come from: any number of samples of one shape and
/// dtype, each with a target (an i32 label, i32 token ids, or f32 real values).
/// Implement it to feed data from anywhere; the file formats (docs/data.md)
/// become a memory_dataset. Loaders call read from their own threads, so an
/// implementation must allow concurrent reads (const, no hidden state).
class dataset_source {
public:
  virtual ~dataset_source() = default;
  virtual std::int64_t size() const = 0;
  /// One sample's shape without the leading count, e.g. [28, 28].
  virtual runtime::shape_t sample_shape() const = 0;
  /// u8, i32 or f32.
  virtual runtime::dtype sample_dtype() const = 0;
  /// One target's shape: [] for a label or one real value, [K] for K real
  /// values, [T] for a window of next-token ids.
  virtual runtime::shape_t target_shape() const = 0;
  /// i32 (labels, token ids) or f32 (real-valued targets).
  virtual runtime::dtype target_dtype() const = 0;
  /// The samples `indices`, in that order: x [n, sample_shape...] of
  /// sample_dtype, y [n, target_shape...] of target_dtype.
  virtual std::pair<runtime::tensor, runtime::tensor>
  read(std::span<const std::int32_t> indices) const = 0;
};

/// A data set: a name for messages and a source shared (never copied) by
/// every loader over it in a process.
struct dataset {
  std::string name;
  std::shared_ptr<const dataset_source> source;
  std::int64_t size() const { return source ? source->size() : 0; }
};

/// Two tensors in memory as a data set, zero-copy: samples [N, ...] (u8, i32
/// or f32) and targets [N, ...] (u8 or i32 labels, read as i32; i32 token
/// ids; f32 real values). Throws runtime::input_error naming `name` when the
/// row counts differ or a dtype is not one of these.
dataset memory_dataset(std::string name, runtime::tensor samples, runtime::tensor targets);

/// Rows [begin, end) of `d` as a data set of their own (a held-out tail), sharing its source.
dataset slice(const dataset& d, std::int64_t begin, std::int64_t end, std::string name);

/// What the loader does to inputs on their way to the model: f32 x' = (x -
/// shift[f]) * scale[f] per feature f (one value each: for every feature).
/// Empty: converted to f32 only. Kept as scale (a reciprocal) so that x / 255
/// is computed as x * (1 / 255.f), bitwise as the MNIST loader always did.
struct input_transform {
  std::vector<float> shift;
  std::vector<float> scale;
  /// How checkpoint manifests and reports record it ({"formula", ...}).
  nlohmann::json description;
  bool identity() const { return shift.empty() && scale.empty(); }
};

/// x / divisor.
input_transform divide_by(double divisor, std::string_view source_dtype);
/// (x - mean) / std, one mean and std for every feature.
input_transform standardize(double mean, double std, std::string_view source_dtype);
/// Per-feature mean and std of every sample of `d` (features whose std is 0
/// get scale 1): `--normalize auto`, computed on the training split.
input_transform standardize_per_feature(const dataset& d);
/// No transform (described as "x").
input_transform no_transform(std::string_view source_dtype);

/// Applies `t` to `count` samples of `feature` values at `src` (of dtype
/// `type`: u8, i32 or f32), writing f32 to `dst`.
void transform_inputs(const input_transform& t, runtime::dtype type, const void* src, float* dst,
                      std::int64_t count, std::int64_t feature);

} // namespace troupe::actors
