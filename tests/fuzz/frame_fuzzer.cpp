// libFuzzer target: the data plane's frame-header decoder and the handshake
// message parser and state machine, fed arbitrary bytes. Any crash, sanitizer
// report, or exception other than input_error is a bug.

#include <cstddef>
#include <cstdint>
#include <span>

#include "runtime/error.hpp"
#include "runtime/net/transport/auth.hpp"
#include "runtime/net/transport/frame.hpp"

using namespace troupe::runtime;
using namespace troupe::runtime::transport;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::span<const std::byte> bytes{reinterpret_cast<const std::byte*>(data), size};
  try {
    auto h = decode_frame_header(bytes, frame_limits{64u << 20});
    // Whatever is accepted must re-encode to the same bytes.
    auto again = encode_frame_header(h);
    if (std::span{again}.size() > size ||
        !std::equal(again.begin(), again.end(), bytes.begin()))
      __builtin_trap();
  } catch (const input_error&) {
  }
  if (size >= handshake_message_size) {
    auto msg = bytes.first(handshake_message_size);
    try {
      decode_handshake_message(msg);
    } catch (const input_error&) {
    }
    // The state machines never throw on peer input.
    static const cluster_key key{};
    auto server = handshake::server(key, "fuzz-server", auth_mode::hmac, true);
    server.on_message(msg);
    if (size >= 2 * handshake_message_size)
      server.on_message(bytes.subspan(handshake_message_size, handshake_message_size));
    auto client = handshake::client(key, "fuzz-client", "", auth_mode::hmac);
    client.start();
    client.on_message(msg);
  }
  return 0;
}
