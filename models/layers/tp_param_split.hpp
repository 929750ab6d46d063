#pragma once

#include <cstdint>
#include <string>

#include "runtime/tensor.hpp"

namespace troupe::models {

/// Which part of a tensor (a parameter, its optimizer state, or an
/// activation's last dimension) one tensor-parallel rank holds.
///
/// axis == -1: the whole tensor, replicated on every rank (offset, extent and
/// full are then 0). Otherwise dimension `axis` of the full tensor has
/// blocks * full indices, made of `blocks` equal consecutive blocks, and the
/// rank holds indices [offset, offset + extent) of every block, concatenated
/// in block order. blocks == 1 is a plain contiguous slice; blocks == 3 is
/// attention's qkv, whose rows [q | k | v] each give a rank the rows of its
/// heads.
struct tp_param_split {
  int axis = -1;
  std::int64_t offset = 0;
  std::int64_t extent = 0;
  std::int64_t full = 0;
  std::int64_t blocks = 1;

  bool replicated() const noexcept { return axis < 0; }
  friend bool operator==(const tp_param_split&, const tp_param_split&) = default;
};

/// The shape of the slice a split takes from a tensor of shape `full_shape`.
/// Throws std::invalid_argument naming `name` when the shape does not fit.
runtime::shape_t tp_slice_shape(const runtime::shape_t& full_shape, const tp_param_split& s,
                                const std::string& name);

/// The rank's slice of `full` (a copy with its own storage); a replicated
/// split returns `full` itself (storage shared). Works for any dtype of a CPU
/// tensor. Throws std::invalid_argument naming `name` on a shape mismatch.
runtime::tensor tp_take_slice(const runtime::tensor& full, const tp_param_split& s,
                              const std::string& name);

/// Copies `slice` (shape tp_slice_shape(full.shape(), s)) into its place in
/// `full`, the inverse of tp_take_slice. `s` must not be replicated. Throws
/// std::invalid_argument naming `name` on a dtype or shape mismatch.
void tp_put_slice(runtime::tensor& full, const runtime::tensor& slice, const tp_param_split& s,
                  const std::string& name);

} // namespace troupe::models
