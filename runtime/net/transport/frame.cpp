#include "runtime/net/transport/frame.hpp"

#include <cstring>
#include <stdexcept>
#include <string>

#include "runtime/error.hpp"

namespace troupe::runtime::transport {

namespace {

// Layout (offsets in bytes, all integers little-endian):
//   0 magic u32 | 4 version u16 | 6 kind u8 | 7 flags u8 | 8 sender_id u32
//  12 stream_id u32 | 16 transfer_id u64 | 24 dtype u8 | 25 device kind u8
//  26 device index i16 | 28 rank u8 | 29 reserved[3] (zero)
//  32 extents i64[8] (unused ones zero) | 96 payload_bytes u64 | 104 end
constexpr std::size_t off_magic = 0, off_version = 4, off_kind = 6, off_flags = 7,
                      off_sender = 8, off_stream = 12, off_transfer = 16, off_dtype = 24,
                      off_dev_kind = 25, off_dev_index = 26, off_rank = 28, off_reserved = 29,
                      off_extents = 32, off_payload = 96;
static_assert(off_extents + 8 * max_wire_rank == off_payload);
static_assert(off_payload + 8 == frame_header_size);

template <class T>
void put(std::byte* p, T v) {
  using U = std::make_unsigned_t<T>;
  auto u = static_cast<U>(v);
  for (std::size_t i = 0; i < sizeof(U); ++i)
    p[i] = static_cast<std::byte>((u >> (8 * i)) & 0xff);
}

template <class T>
T get(const std::byte* p) {
  using U = std::make_unsigned_t<T>;
  U u = 0;
  for (std::size_t i = 0; i < sizeof(U); ++i)
    u = static_cast<U>(u | (static_cast<U>(std::to_integer<std::uint8_t>(p[i])) << (8 * i)));
  return static_cast<T>(u);
}

std::string fmt_hex(std::uint64_t v) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string s;
  do {
    s.insert(s.begin(), digits[v & 0xf]);
    v >>= 4;
  } while (v != 0);
  return s;
}

[[noreturn]] void reject(const std::string& what) {
  throw input_error("data-plane frame rejected: " + what);
}

} // namespace

encoded_frame_header encode_frame_header(const frame_header& h) {
  if (h.kind != frame_kind::tensor && h.kind != frame_kind::close)
    throw std::invalid_argument("encode_frame_header: unknown frame kind");
  if (h.tensor.shape.size() > max_wire_rank)
    throw std::invalid_argument("encode_frame_header: rank " +
                                std::to_string(h.tensor.shape.size()) + " exceeds the limit");
  encoded_frame_header out{};
  auto* p = out.data();
  put<std::uint32_t>(p + off_magic, frame_magic);
  put<std::uint16_t>(p + off_version, frame_version);
  put<std::uint8_t>(p + off_kind, static_cast<std::uint8_t>(h.kind));
  put<std::uint8_t>(p + off_flags, h.flags);
  put<std::uint32_t>(p + off_sender, h.sender_id);
  put<std::uint32_t>(p + off_stream, h.stream_id);
  put<std::uint64_t>(p + off_transfer, h.transfer_id);
  if (h.kind == frame_kind::tensor) {
    put<std::uint8_t>(p + off_dtype, static_cast<std::uint8_t>(h.tensor.type));
    put<std::uint8_t>(p + off_dev_kind, static_cast<std::uint8_t>(h.tensor.where.kind()));
    put<std::int16_t>(p + off_dev_index, h.tensor.where.index());
    put<std::uint8_t>(p + off_rank, static_cast<std::uint8_t>(h.tensor.shape.size()));
    for (std::size_t i = 0; i < h.tensor.shape.size(); ++i)
      put<std::int64_t>(p + off_extents + 8 * i, h.tensor.shape[i]);
    put<std::uint64_t>(p + off_payload, h.tensor.payload_bytes);
  }
  return out;
}

frame_header tensor_frame_header(std::uint64_t transfer_id, const runtime::tensor& t,
                                 std::uint32_t sender_id, std::uint32_t stream_id) {
  if (!t.defined())
    throw std::invalid_argument("data plane: cannot send an undefined tensor");
  frame_header h;
  h.kind = frame_kind::tensor;
  h.sender_id = sender_id;
  h.stream_id = stream_id;
  h.transfer_id = transfer_id;
  h.tensor = header_of(t);
  return h;
}

frame_header decode_frame_header(std::span<const std::byte> bytes, const frame_limits& limits) {
  if (bytes.size() < frame_header_size)
    reject("truncated header (" + std::to_string(bytes.size()) + " of " +
           std::to_string(frame_header_size) + " bytes)");
  const auto* p = bytes.data();
  if (auto magic = get<std::uint32_t>(p + off_magic); magic != frame_magic)
    reject("bad magic 0x" + fmt_hex(magic));
  if (auto v = get<std::uint16_t>(p + off_version); v != frame_version)
    reject("unsupported version " + std::to_string(v) + " (expected " +
           std::to_string(frame_version) + ")");
  frame_header h;
  auto kind = get<std::uint8_t>(p + off_kind);
  if (kind != static_cast<std::uint8_t>(frame_kind::tensor) &&
      kind != static_cast<std::uint8_t>(frame_kind::close))
    reject("unknown frame kind " + std::to_string(kind));
  h.kind = static_cast<frame_kind>(kind);
  h.flags = get<std::uint8_t>(p + off_flags);
  if ((h.flags & ~known_frame_flags) != 0)
    reject("unknown flags 0x" + fmt_hex(h.flags));
  for (std::size_t i = 0; i < 3; ++i)
    if (get<std::uint8_t>(p + off_reserved + i) != 0)
      reject("reserved bytes are not zero");
  h.sender_id = get<std::uint32_t>(p + off_sender);
  h.stream_id = get<std::uint32_t>(p + off_stream);
  h.transfer_id = get<std::uint64_t>(p + off_transfer);
  auto type = get<std::uint8_t>(p + off_dtype);
  auto dev_kind = get<std::uint8_t>(p + off_dev_kind);
  auto dev_index = get<std::int16_t>(p + off_dev_index);
  auto rank = get<std::uint8_t>(p + off_rank);
  auto payload = get<std::uint64_t>(p + off_payload);
  if (rank > max_wire_rank)
    reject("rank " + std::to_string(rank) + " exceeds the limit of " +
           std::to_string(max_wire_rank));
  for (std::size_t i = rank; i < max_wire_rank; ++i)
    if (get<std::int64_t>(p + off_extents + 8 * i) != 0)
      reject("extent " + std::to_string(i) + " beyond rank " + std::to_string(rank) +
             " is not zero");
  if (h.kind == frame_kind::close) {
    if (type != 0 || dev_kind != 0 || dev_index != 0 || rank != 0 || payload != 0)
      reject("close frame carries tensor fields or a payload");
    return h;
  }
  // Checked here already so the message names the cap even when the shape is
  // also inconsistent: the cap is what protects the receiver's memory.
  if (payload > limits.max_payload_bytes)
    reject("payload of " + std::to_string(payload) + " bytes exceeds the limit of " +
           std::to_string(limits.max_payload_bytes));
  auto t = dtype_from_wire(type);
  if (!t)
    reject("unknown dtype code " + std::to_string(type));
  if (dev_kind != static_cast<std::uint8_t>(device_kind::cpu) || dev_index != 0)
    reject("device kind " + std::to_string(dev_kind) + " index " + std::to_string(dev_index) +
           ": only CPU tensors travel on the data plane");
  h.tensor.type = *t;
  h.tensor.where = device::cpu();
  h.tensor.payload_bytes = payload;
  h.tensor.shape.reserve(rank); // bounded by max_wire_rank, not by the peer
  for (std::size_t i = 0; i < rank; ++i)
    h.tensor.shape.push_back(get<std::int64_t>(p + off_extents + 8 * i));
  try {
    validate_tensor_header(h.tensor, limits.max_payload_bytes);
  } catch (const input_error& e) {
    reject(e.what());
  }
  return h;
}

} // namespace troupe::runtime::transport
