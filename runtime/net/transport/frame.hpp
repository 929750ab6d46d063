#pragma once

// The wire format of the data plane, as pure functions: no sockets, no
// allocation proportional to anything a peer claims. The decoder is the first
// code that sees bytes from the network (and the libFuzzer target's entry
// point), so it validates every field before the caller allocates a payload.

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

#include "runtime/net/tensor_codec.hpp"

namespace troupe::runtime::transport {

/// "TRDP" as little-endian bytes on the wire.
inline constexpr std::uint32_t frame_magic = 0x50445254;
/// Bumped on any incompatible change of the layout below.
inline constexpr std::uint16_t frame_version = 1;
/// Every frame starts with a header of exactly this many bytes.
inline constexpr std::size_t frame_header_size = 104;

/// What a frame carries. Values are part of the wire format: append only.
enum class frame_kind : std::uint8_t {
  tensor = 1, ///< a tensor_header and payload_bytes of raw tensor bytes follow
  close = 2,  ///< orderly goodbye, no payload
};

/// Flag bits; none are defined yet, so a non-zero flags byte is rejected.
inline constexpr std::uint8_t known_frame_flags = 0;

/// Limits applied while decoding bytes from a peer.
struct frame_limits {
  std::uint64_t max_payload_bytes = default_max_tensor_bytes;
};

/// One decoded frame header. For `close` frames the tensor fields are empty
/// and payload_bytes is 0.
struct frame_header {
  frame_kind kind = frame_kind::tensor;
  std::uint8_t flags = 0;
  std::uint32_t sender_id = 0;   ///< the sending node's id (informational)
  std::uint32_t stream_id = 0;   ///< lets a later layer multiplex streams
  std::uint64_t transfer_id = 0; ///< what the CAF descriptor message refers to
  tensor_header tensor;          ///< dtype, device, shape, payload_bytes

  std::uint64_t payload_bytes() const noexcept { return tensor.payload_bytes; }
};

using encoded_frame_header = std::array<std::byte, frame_header_size>;

/// Encodes a header, little-endian. Throws std::invalid_argument for a header
/// that could not be decoded again (rank > max_wire_rank, unknown kind).
encoded_frame_header encode_frame_header(const frame_header& h);

/// The header of a tensor frame describing `t`.
frame_header tensor_frame_header(std::uint64_t transfer_id, const runtime::tensor& t,
                                 std::uint32_t sender_id = 0, std::uint32_t stream_id = 0);

/// Decodes and validates a header received from a peer: length, magic,
/// version, kind, flags, reserved bytes, dtype, device, rank, unused extents,
/// payload <= limits.max_payload_bytes and shape x element size == payload
/// (validate_tensor_header). Throws input_error naming the violated rule.
/// Only bytes.first(frame_header_size) are read; fewer bytes are "truncated".
frame_header decode_frame_header(std::span<const std::byte> bytes, const frame_limits& limits);

} // namespace troupe::runtime::transport
