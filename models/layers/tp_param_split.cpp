#include "models/layers/tp_param_split.hpp"

#include <cstring>
#include <stdexcept>

namespace troupe::models {

namespace {

[[noreturn]] void bad(const std::string& name, const std::string& what) {
  throw std::invalid_argument("tensor parallel: tensor '" + name + "': " + what);
}

std::string describe(const tp_param_split& s) {
  return "axis " + std::to_string(s.axis) + " [" + std::to_string(s.offset) + ", " +
         std::to_string(s.offset + s.extent) + ") of " + std::to_string(s.full) +
         (s.blocks == 1 ? std::string{} : " in each of " + std::to_string(s.blocks) + " blocks");
}

void check_split(const tp_param_split& s, std::size_t rank, const std::string& name) {
  if (s.axis < 0 || static_cast<std::size_t>(s.axis) >= rank || s.blocks < 1 || s.full < 1 ||
      s.offset < 0 || s.extent < 1 || s.offset + s.extent > s.full)
    bad(name, "split " + describe(s) + " does not fit a tensor of rank " + std::to_string(rank));
}

/// The copy geometry of a split of a (full) shape: `outer` repetitions of
/// `blocks` blocks, each with rows of `inner` bytes per index along the axis.
struct geometry {
  std::int64_t outer = 1;
  std::size_t inner = 0;
};

geometry geometry_of(const runtime::shape_t& shape, const tp_param_split& s, runtime::dtype t) {
  geometry g;
  const auto axis = static_cast<std::size_t>(s.axis);
  for (std::size_t i = 0; i < axis; ++i)
    g.outer *= shape[i];
  std::int64_t inner = 1;
  for (std::size_t i = axis + 1; i < shape.size(); ++i)
    inner *= shape[i];
  g.inner = static_cast<std::size_t>(inner) * runtime::element_size(t);
  return g;
}

/// Copies every block of the split from `src` to `dst`: from a full tensor's
/// bytes to a slice's when `from_full`, back otherwise.
void copy_slices(const char* src, char* dst, const geometry& g, const tp_param_split& s,
                 bool from_full) {
  const std::size_t chunk = static_cast<std::size_t>(s.extent) * g.inner;
  for (std::int64_t o = 0; o < g.outer; ++o)
    for (std::int64_t b = 0; b < s.blocks; ++b) {
      const auto f = static_cast<std::size_t>((o * s.blocks + b) * s.full + s.offset) * g.inner;
      const auto p = static_cast<std::size_t>((o * s.blocks + b) * s.extent) * g.inner;
      if (from_full)
        std::memcpy(dst + p, src + f, chunk);
      else
        std::memcpy(dst + f, src + p, chunk);
    }
}

void check_cpu(const runtime::tensor& t, const std::string& name) {
  if (!t.defined())
    bad(name, "undefined tensor");
  if (!t.where().is_cpu())
    bad(name, "tensor-parallel slicing needs a CPU tensor");
}

} // namespace

runtime::shape_t tp_slice_shape(const runtime::shape_t& full_shape, const tp_param_split& s,
                                const std::string& name) {
  if (s.replicated())
    return full_shape;
  check_split(s, full_shape.size(), name);
  const auto axis = static_cast<std::size_t>(s.axis);
  if (full_shape[axis] != s.blocks * s.full)
    bad(name, "shape " + runtime::to_string(full_shape) + " does not fit the split " + describe(s) +
                  " (expected extent " + std::to_string(s.blocks * s.full) + " along axis " +
                  std::to_string(s.axis) + ")");
  runtime::shape_t out = full_shape;
  out[axis] = s.blocks * s.extent;
  return out;
}

runtime::tensor tp_take_slice(const runtime::tensor& full, const tp_param_split& s,
                              const std::string& name) {
  check_cpu(full, name);
  if (s.replicated())
    return full;
  runtime::tensor out = runtime::tensor::empty(full.type(), tp_slice_shape(full.shape(), s, name));
  copy_slices(static_cast<const char*>(full.raw_data()), static_cast<char*>(out.mutable_raw_data()),
              geometry_of(full.shape(), s, full.type()), s, true);
  return out;
}

void tp_put_slice(runtime::tensor& full, const runtime::tensor& slice, const tp_param_split& s,
                  const std::string& name) {
  check_cpu(full, name);
  check_cpu(slice, name);
  if (s.replicated())
    bad(name, "tp_put_slice needs a split, not a replicated tensor");
  if (slice.type() != full.type())
    bad(name, std::string{"slice dtype "} + std::string{runtime::to_string(slice.type())} +
                  " differs from the full tensor's " +
                  std::string{runtime::to_string(full.type())});
  const runtime::shape_t want = tp_slice_shape(full.shape(), s, name);
  if (slice.shape() != want)
    bad(name, "slice shape " + runtime::to_string(slice.shape()) + " does not match " +
                  runtime::to_string(want) + " (split " + describe(s) + " of " +
                  runtime::to_string(full.shape()) + ")");
  copy_slices(static_cast<const char*>(slice.raw_data()),
              static_cast<char*>(full.mutable_raw_data()),
              geometry_of(full.shape(), s, full.type()), s, false);
}

} // namespace troupe::models
