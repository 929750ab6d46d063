#pragma once

#include <cstdint>
#include <string>

namespace troupe::models {

/// A contiguous range of split units (output features, input features, heads,
/// hidden units) one tensor-parallel rank owns: [offset, offset + extent).
struct tp_range {
  std::int64_t offset = 0;
  std::int64_t extent = 0;

  friend bool operator==(const tp_range&, const tp_range&) = default;
};

/// Rank `rank`'s share when `units` are split over `parts` ranks: contiguous,
/// in rank order, the first units % parts ranks one unit more than the rest
/// (10 over 3: 4, 3, 3). The one splitting rule of tensor parallelism, used
/// by the layout and the layers alike. Throws std::invalid_argument naming
/// `who` when a rank would get no unit (units < parts) or the arguments are
/// out of range.
tp_range tp_split_units(std::int64_t units, int parts, int rank, const std::string& who);

} // namespace troupe::models
