#pragma once

// Mutual TLS for CAF connections (caf_openssl) and BASP liveness settings.
//
// CAF 0.17's BASP allocates whatever payload length a frame header claims
// (up to 4 GiB) before application code runs, so peers must be authenticated
// below BASP: caf_openssl with a cluster CA, where every node presents a
// certificate signed by that CA and verifies the other side's. caf_openssl
// only reads the files when the first connection is made, and a bad file then
// aborts the process from the multiplexer thread; configure_tls therefore
// loads and checks everything up front, while the CLI can still print a clear
// error.

#include <chrono>
#include <filesystem>
#include <string>

#include <caf/fwd.hpp>

namespace troupe::runtime {

/// The PEM files of one node: its certificate, its private key and the cluster
/// CA certificate that every peer's certificate must chain to.
struct tls_files {
  std::filesystem::path certificate;
  std::filesystem::path key;
  std::filesystem::path ca;
  /// Passphrase of an encrypted key; empty for an unencrypted one.
  std::string passphrase;
};

/// Checks `files` (each exists and parses, the key matches the certificate,
/// the certificate chains to the CA and is within its validity period) and
/// sets caf_openssl's options (openssl.certificate, .key, .cafile,
/// .passphrase) on `cfg`, which makes caf::openssl::publish/remote_actor
/// require and verify certificates on both sides. The config must also load
/// caf::io::middleman and caf::openssl::manager. Throws input_error naming the
/// file and what is wrong.
void configure_tls(caf::actor_system_config& cfg, const tls_files& files);

/// The same checks without a config (`troupe certs check`, tests).
void validate_tls_files(const tls_files& files);

/// Turns on BASP heartbeats (middleman.heartbeat-interval) and the connection
/// timeout (middleman.connection-timeout) so a hung peer (SIGSTOP, a frozen
/// host) is declared dead, which CAF 0.17 never does by default. Every node of
/// a cluster must use it: a peer that sends no heartbeats looks dead once it is
/// idle for `timeout`. Requires 0 < heartbeat < timeout; throws input_error
/// otherwise.
void configure_liveness(caf::actor_system_config& cfg, std::chrono::milliseconds heartbeat,
                        std::chrono::milliseconds timeout);

} // namespace troupe::runtime
