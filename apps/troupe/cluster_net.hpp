#pragma once

// What `troupe supervisor`, `troupe node` and `troupe train --supervisor`
// share: the security flags, the actor system config of a cluster process,
// and publishing / connecting over mutual TLS (or plain TCP on loopback,
// only when asked for explicitly).

#include <chrono>
#include <optional>
#include <string>

#include <CLI/CLI.hpp>
#include <caf/actor.hpp>
#include <caf/actor_system.hpp>

#include "actors/protocol/system_config.hpp"
#include "runtime/net/cluster_spec.hpp"
#include "runtime/net/security/tls_config.hpp"

namespace troupe::apps {

/// --certs DIR (+ --name) or --cert/--key/--ca, or --insecure-plain.
struct security_flags {
  std::string certs_dir;
  std::string cert, key, ca;
  std::string passphrase_env;
  bool insecure_plain = false;
  int heartbeat_ms = 250;
  int timeout_ms = 1500;
};

void add_security_flags(CLI::App* cmd, security_flags& f);

/// The TLS files for `name` (--certs DIR gives DIR/NAME.pem, DIR/NAME-key.pem
/// and DIR/ca.pem), or nullopt with --insecure-plain. Throws input_error when
/// neither or both are given, or when --insecure-plain is used with a
/// non-loopback `host`.
std::optional<runtime::tls_files> resolve_security(const security_flags& f, const std::string& name,
                                                   const std::string& host);

/// A cluster process's actor system config: middleman, caf_openssl with the
/// TLS files checked up front (configure_tls), heartbeats on (configure_liveness).
class cluster_system_config : public actors::system_config {
public:
  cluster_system_config(const std::optional<runtime::tls_files>& tls, const security_flags& f);
  bool tls() const noexcept { return tls_; }

private:
  bool tls_ = false;
};

/// Publishes `a` on host:port (0: ephemeral) over TLS or plain TCP; returns
/// the bound port. Throws input_error when it cannot bind, saying why in
/// words (runtime::explain_listen_error) and naming `flag`.
std::uint16_t publish_actor(caf::actor_system& sys, const caf::actor& a, bool tls,
                            const runtime::host_port& where, const std::string& flag = "--listen");

/// Connects to the actor published at `where`, retrying until `patience` runs
/// out (the supervisor may start after its nodes). Throws std::runtime_error
/// saying in words why `peer` cannot be reached (runtime::explain_connect_error),
/// at once when retrying cannot help (TLS against plain, a refused certificate).
caf::actor connect_actor(caf::actor_system& sys, bool tls, const runtime::host_port& where,
                         std::chrono::milliseconds patience,
                         const std::string& peer = "the supervisor");

bool is_loopback_host(const std::string& host);

/// gethostname(), "localhost" when it fails.
std::string local_host_name();

/// "host:port" where port 0 (an ephemeral port) is allowed, unlike
/// runtime::parse_host_port. Throws input_error naming `field`.
runtime::host_port parse_listen_address(const std::string& text, const std::string& field);

/// Node names come from certificates and file names ([A-Za-z0-9._-]); a
/// cluster spec's "worker:1" becomes "worker-1".
std::string node_name_from_spec(const std::string& spec_name);

} // namespace troupe::apps
