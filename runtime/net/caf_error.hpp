#pragma once

// CAF errors in words: describe() gives the text troupe put into an error;
// the explain_* functions turn what CAF, OpenSSL and the system report at a
// user-facing boundary (connecting, listening, losing a peer) into one
// sentence with the likely cause and the fix. CAF's own rendering stays in
// the debug log ("net" logger), never in front of the user.

#include <cstdint>
#include <string>

#include <caf/actor_system.hpp>
#include <caf/error.hpp>
#include <caf/message.hpp>

#include "runtime/net/cluster_spec.hpp"

namespace troupe::runtime {

/// The human-readable text of an error: the message troupe put into it when
/// there is one (caf::make_error(code, "what went wrong")), else a phrase for
/// CAF's common codes (a lost connection, no answer in time, a handshake cut
/// short), else CAF's rendering. CAF's rendering is always logged at debug.
std::string describe(const caf::actor_system& sys, const caf::error& err);

/// Why a connect to `peer` ("the supervisor") at `where` failed, as a
/// sentence: nothing listening, a host that does not resolve or answer, a
/// TLS peer met with plain TCP or the other way round, a certificate one
/// side refused. `tls`: this process connected over TLS. Probes the address
/// with a plain TCP connect to tell these apart.
struct connect_failure {
  std::string message;
  /// Retrying can help: nothing listens there yet (the peer may start
  /// later). A TLS / plain mismatch or a refused certificate never heals.
  bool transient = true;
};
connect_failure explain_connect_error(const caf::actor_system& sys, const caf::error& err,
                                      const std::string& peer, const host_port& where, bool tls);

/// Why publishing on `where` failed (`flag` names the option, "--listen"):
/// the port in use, an address not on this machine, a privileged port.
std::string explain_listen_error(const caf::actor_system& sys, const caf::error& err,
                                 const std::string& flag, const host_port& where);

/// The same for any listener (the HTTP status server): binds `where` itself
/// to find out why; `fallback` when it binds now.
std::string explain_listen_failure(const std::string& flag, const host_port& where,
                                   const std::string& fallback);

/// What the system says of a TCP connect to `where` within `timeout_ms`:
/// 0 when it connected, else the errno (ETIMEDOUT for no answer at all,
/// -1 when the host name does not resolve). With `spoke_first` non-null
/// and a connection made: whether the peer sent bytes before us (a plain
/// CAF port greets, a TLS server waits for the client's hello).
int probe_tcp(const host_port& where, int timeout_ms, bool* spoke_first = nullptr);

} // namespace troupe::runtime
