#pragma once

#include <string>
#include <vector>

#include "runtime/tensor.hpp"

namespace troupe::runtime {

/// Parameters or optimizer state by name (checkpoints, broadcast, PS pulls).
struct named_tensors {
  std::vector<std::string> names;
  std::vector<tensor> tensors;
  /// Small string metadata (optimizer type and step count, ...).
  std::vector<std::string> meta_keys;
  std::vector<std::string> meta_values;
};

} // namespace troupe::runtime
