#pragma once

// Proof of a node's name at the cluster join handshake. caf_openssl accepts
// any certificate of the cluster CA for any peer (runtime/net/security/tls_config.hpp), so
// a node holding the certificate of "b" could otherwise join as "a". At join
// the supervisor sends a fresh nonce from a challenge_book; the node answers
// with its certificate and its key's signature of join_proof_message(nonce,
// name, supervisor id); the supervisor consumes the nonce (single use, so a
// recorded answer cannot be replayed) and calls verify_node_identity (chain to
// the CA, CN = claimed name, signature).

#include <chrono>
#include <cstddef>
#include <deque>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/net/security/tls_config.hpp"

namespace troupe::runtime {

/// PEM text of the certificate file (checked to parse).
std::string read_certificate_pem(const std::filesystem::path& certificate);

/// What an operator checks in a certificate (`troupe certs check`).
struct certificate_info {
  std::string subject;
  std::string issuer;
  /// Empty when the subject has no CN or several.
  std::string common_name;
  /// "DNS:name", "IP:address", "email:...", "URI:...", in certificate order.
  std::vector<std::string> subject_alt_names;
  std::chrono::system_clock::time_point not_before;
  std::chrono::system_clock::time_point not_after;
};

/// The first certificate of `certificate_pem`. Throws input_error when it is
/// not a PEM certificate.
certificate_info describe_certificate(std::string_view certificate_pem);

/// Signs `message` with the private key in `files.key` (passphrase if any):
/// ECDSA/SHA-256 (or whatever the key type needs, via EVP_DigestSign),
/// returned as lowercase hex.
std::string sign_message(const tls_files& files, std::string_view message);

/// Verifies that `certificate_pem` is not a CA certificate and chains to the
/// CA certificate at `ca` (X509_verify_cert, TLS client purpose, within
/// validity; further certificates in the PEM are intermediates), that its one
/// CN equals `expected_name`, and that `signature_hex` is its key's signature
/// of `message`. Throws input_error naming what failed ("certificate CN 'x'
/// does not match node name 'y'", "signature does not verify ...",
/// "certificate ... not signed by the cluster CA ...: <OpenSSL's reason>").
/// Bounded input: PEM up to 64 KiB, signature up to 1024 bytes.
void verify_node_identity(const std::filesystem::path& ca, std::string_view certificate_pem,
                          std::string_view expected_name, std::string_view message,
                          std::string_view signature_hex);

/// The bytes a node signs to join: a domain tag, then the nonce, the node
/// name and the supervisor id separated by newlines, so no two different
/// triples give the same message and a signature made for one supervisor does
/// not work for another. Throws input_error for a nonce that is not 64 hex
/// digits or a name or id containing a newline or NUL.
std::string join_proof_message(std::string_view nonce_hex, std::string_view node_name,
                               std::string_view supervisor_id);

/// 32 random bytes as hex (RAND_bytes) for challenges.
std::string random_nonce_hex();

/// Single-use challenges: issue() returns a fresh nonce remembered for `ttl`;
/// consume(nonce) returns true once for a nonce that was issued and has not
/// expired or been consumed. At most `capacity` are outstanding (issuing more
/// drops the oldest), so unanswered joins cannot grow it. A value type with no
/// globals, thread-compatible (one owner, e.g. the supervisor actor); the
/// clock is injectable for tests.
class challenge_book {
public:
  using clock = std::chrono::steady_clock;
  using now_function = std::function<clock::time_point()>;

  /// Throws input_error unless ttl > 0, capacity > 0 and `now` is set.
  explicit challenge_book(std::chrono::milliseconds ttl = std::chrono::seconds(30),
                          std::size_t capacity = 256, now_function now = clock::now);

  std::string issue();
  bool consume(std::string_view nonce);

  /// Nonces issued and neither consumed nor expired.
  std::size_t outstanding() const;

private:
  struct challenge {
    std::string nonce;
    clock::time_point expires;
  };

  /// Drops expired challenges (they are in issue order, so from the front).
  void drop_expired(clock::time_point now);

  std::chrono::milliseconds ttl_;
  std::size_t capacity_;
  now_function now_;
  std::deque<challenge> open_;
};

} // namespace troupe::runtime
