#pragma once

// Mutual authentication of data-plane connections with a pre-shared cluster
// key: HMAC-SHA256 challenge-response with fresh 32-byte nonces from both
// sides. Each MAC covers a domain label, its role (server/client), the
// protocol version, both party names and both nonces, so a recorded handshake
// cannot be replayed (the other side's nonce is new), reflected (the roles
// differ) or moved to another pair of names. MACs are compared in constant
// time (CRYPTO_memcmp). The transport-agnostic state machine below is driven
// by the data plane and by tests with plain byte buffers.
//
// Every node of a cluster holds the same key, so the handshake keeps outsiders
// out; it does not stop one key holder from claiming another's name.
//
// Messages have a fixed size (handshake_message_size), so reading one never
// depends on a length a peer claims.
//
//   client                                     server
//   HELLO(mode, client name, Nc)         ->
//                                        <-    CHALLENGE(server name, Ns, MACs)
//   RESPONSE(MACc)                       ->
//                                        <-    ACCEPT | REJECT(reason)
//
// Plain mode (no key, no MACs): HELLO(plain) -> ACCEPT/REJECT. The server
// accepts it only when configured for it and both endpoints are loopback.

#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace troupe::runtime::transport {

inline constexpr std::size_t key_bytes = 32;
inline constexpr std::size_t nonce_bytes = 32;
inline constexpr std::size_t mac_bytes = 32;
inline constexpr std::size_t max_party_name = 64;
inline constexpr std::uint16_t auth_version = 1;
/// "TRPA" as little-endian bytes on the wire.
inline constexpr std::uint32_t auth_magic = 0x41505254;
inline constexpr std::size_t handshake_message_size = 140;

using cluster_key = std::array<std::uint8_t, key_bytes>;
using nonce = std::array<std::uint8_t, nonce_bytes>;
using mac = std::array<std::uint8_t, mac_bytes>;
using handshake_bytes = std::array<std::byte, handshake_message_size>;

/// A fresh random key (OpenSSL RAND_bytes); throws std::runtime_error when the
/// random generator fails.
cluster_key generate_key();

/// Reads a key file: 64 hex digits, optionally followed by a newline. Throws
/// input_error naming the file when it is missing, malformed, or readable or
/// writable by group or others (like ssh, a shared secret must be 0600).
cluster_key load_key(const std::filesystem::path& path);

/// Writes the key as 64 hex digits with mode 0600 (created, or replaced).
void save_key(const std::filesystem::path& path, const cluster_key& key);

/// The key's text form, as in key files and the cluster join's welcome: 64
/// lowercase hex digits.
std::string key_to_hex(const cluster_key& key);

/// Parses 64 hex digits (either case). Throws input_error starting with
/// `what` ("cluster key file /x") when the length or a digit is wrong.
cluster_key key_from_hex(std::string_view text, std::string_view what);

enum class auth_mode : std::uint8_t { hmac = 0, plain = 1 };

enum class handshake_type : std::uint8_t {
  hello = 1,
  challenge = 2,
  response = 3,
  accept = 4,
  reject = 5,
};

/// Why a server refused a client; sent in REJECT messages.
enum class reject_reason : std::uint8_t {
  none = 0,
  bad_mac = 1,
  plain_refused = 2,
  mode_mismatch = 3,
  bad_message = 4,
};

std::string_view to_string(reject_reason r) noexcept;

/// One handshake message, decoded.
struct handshake_message {
  handshake_type type = handshake_type::hello;
  auth_mode mode = auth_mode::hmac;
  reject_reason reason = reject_reason::none;
  std::string name; ///< sender's name (hello, challenge, accept)
  nonce n{};        ///< hello, challenge
  mac m{};          ///< challenge, response
};

handshake_bytes encode_handshake_message(const handshake_message& m);

/// Validates and decodes one message: size, magic, version, type, mode,
/// reason, name length and characters (printable ASCII, 1..64 bytes for the
/// types that carry one), zero padding. Throws input_error naming the rule.
handshake_message decode_handshake_message(std::span<const std::byte> bytes);

/// Party names: 1..max_party_name printable ASCII characters without spaces.
bool valid_party_name(std::string_view name) noexcept;

/// The MAC one side proves key possession with (role 'S' server, 'C' client).
mac compute_mac(const cluster_key& key, char role, std::string_view client_name,
                std::string_view server_name, const nonce& client_nonce, const nonce& server_nonce);

/// The handshake of one connection, fed whole messages. Never throws on bad
/// peer input: it moves to `failed` with a reason and may leave a REJECT to
/// send.
class handshake {
public:
  enum class state { in_progress, done, failed };

  /// Client side: `expected_server` (may be empty: anyone with the key) is
  /// the name the server must announce.
  static handshake client(const cluster_key& key, std::string self_name,
                          std::string expected_server, auth_mode mode);
  /// Server side. `plain_allowed` is true only when the server was configured
  /// for plain mode and both endpoints of this connection are loopback.
  static handshake server(const cluster_key& key, std::string self_name, auth_mode mode,
                          bool plain_allowed);

  /// The client's first message (HELLO); servers have none.
  std::optional<handshake_bytes> start();
  /// Processes one message from the peer; returns what to send back, if
  /// anything. After `failed` the returned message (if any) is a REJECT.
  std::optional<handshake_bytes> on_message(std::span<const std::byte> bytes);

  state status() const noexcept { return state_; }
  /// The authenticated peer's name (valid once done).
  const std::string& peer_name() const noexcept { return peer_name_; }
  /// Why the handshake failed (empty otherwise).
  const std::string& error() const noexcept { return error_; }

private:
  handshake(const cluster_key& key, std::string self_name, std::string expected_peer,
            auth_mode mode, bool is_server, bool plain_allowed);
  std::optional<handshake_bytes> fail(std::string why, reject_reason send_reason);
  std::optional<handshake_bytes> on_client_message(const handshake_message& m);
  std::optional<handshake_bytes> on_server_message(const handshake_message& m);

  cluster_key key_;
  std::string self_name_;
  std::string expected_peer_;
  std::string peer_name_;
  std::string error_;
  auth_mode mode_;
  bool is_server_;
  bool plain_allowed_;
  int step_ = 0;
  nonce own_nonce_{};
  nonce peer_nonce_{};
  state state_ = state::in_progress;
};

} // namespace troupe::runtime::transport
