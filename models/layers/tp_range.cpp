#include "models/layers/tp_range.hpp"

#include <stdexcept>

namespace troupe::models {

tp_range tp_split_units(std::int64_t units, int parts, int rank, const std::string& who) {
  if (parts < 1 || rank < 0 || rank >= parts)
    throw std::invalid_argument(who + ": tensor-parallel rank " + std::to_string(rank) + " of " +
                                std::to_string(parts) + " is out of range");
  if (units < parts)
    throw std::invalid_argument(who + ": cannot split " + std::to_string(units) + " over " +
                                std::to_string(parts) +
                                " tensor-parallel ranks (a rank would get none)");
  const std::int64_t base = units / parts, extra = units % parts, r = rank;
  return {r * base + (r < extra ? r : extra), base + (r < extra ? 1 : 0)};
}

} // namespace troupe::models
