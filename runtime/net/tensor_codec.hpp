#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

#include "runtime/tensor.hpp"

namespace troupe::runtime {

/// Largest rank a tensor may have on the wire or in a checkpoint.
inline constexpr std::size_t max_wire_rank = 8;
/// Default cap on one tensor's payload received from a peer (1 GiB); set per
/// actor system with the config key troupe.max-tensor-bytes.
inline constexpr std::uint64_t default_max_tensor_bytes = std::uint64_t{1} << 30;

/// The metadata that precedes a tensor's bytes on every wire (CAF messages and
/// the data plane): dtype, device, shape. Validated before any allocation.
struct tensor_header {
  dtype type = dtype::f32;
  device where = device::cpu();
  shape_t shape;
  std::uint64_t payload_bytes = 0;
};

/// Checks a header received from outside: known dtype (by construction), rank
/// <= max_wire_rank, non-negative extents, no overflow, numel x element size ==
/// payload_bytes, payload_bytes <= max_bytes. Throws input_error naming the
/// violated rule.
void validate_tensor_header(const tensor_header& h, std::uint64_t max_bytes);

/// Builds the header describing `t`.
tensor_header header_of(const tensor& t);

} // namespace troupe::runtime
