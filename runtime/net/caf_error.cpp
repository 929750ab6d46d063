#include "runtime/net/caf_error.hpp"

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>

#include <caf/exit_reason.hpp>
#include <caf/sec.hpp>

#include "runtime/log.hpp"

namespace troupe::runtime {

namespace {

bool is(const caf::error& err, caf::sec code) {
  return err.category() == caf::atom("system") && err.code() == static_cast<std::uint8_t>(code);
}

/// Closes a descriptor when it goes out of scope.
struct fd_guard {
  int fd = -1;
  ~fd_guard() {
    if (fd >= 0)
      ::close(fd);
  }
};

/// The first address of `where` (numeric or resolved), nullptr if none.
addrinfo* resolve(const host_port& where, bool passive) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = passive ? AI_PASSIVE : 0;
  addrinfo* res = nullptr;
  auto port = std::to_string(where.port);
  const char* host = where.host.empty() || where.host == "0.0.0.0" ? nullptr : where.host.c_str();
  if (::getaddrinfo(host, port.c_str(), &hints, &res) != 0)
    return nullptr;
  return res;
}

/// Waits up to `ms` for `events` on `fd`; false on timeout.
bool wait_for(int fd, short events, int ms) {
  pollfd p{fd, events, 0};
  return ::poll(&p, 1, ms) > 0;
}

/// The errno of binding `where` ourselves (0: it binds, so CAF failed for
/// another reason), the port CAF could not open.
int probe_bind(const host_port& where) {
  addrinfo* ai = resolve(where, true);
  if (ai == nullptr)
    return EADDRNOTAVAIL;
  fd_guard s{::socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol)};
  int one = 1;
  ::setsockopt(s.fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  int r = s.fd >= 0 && ::bind(s.fd, ai->ai_addr, ai->ai_addrlen) == 0 ? 0 : errno;
  ::freeaddrinfo(ai);
  return r;
}

std::string system_text(int e) {
  if (e == -1)
    return "host name does not resolve";
  if (e == ETIMEDOUT)
    return "no answer";
  std::string s = std::strerror(e);
  if (!s.empty())
    s[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(s[0])));
  return s;
}

} // namespace

std::string describe(const caf::actor_system& sys, const caf::error& err) {
  if (!err) // a normal exit: CAF 0.17's empty error has no context to read
    return "it exited normally";
  const auto& ctx = err.context();
  if (ctx.size() == 1 && ctx.match_element<std::string>(0))
    return ctx.get_as<std::string>(0);
  auto raw = sys.render(err);
  logger("net")->debug("CAF error: {}", raw);
  if (err == caf::exit_reason::remote_link_unreachable)
    return "the connection to it was lost (the process stopped or the network failed)";
  if (is(err, caf::sec::request_timeout))
    return "no answer in time (the peer is overloaded, stopped or unreachable)";
  if (is(err, caf::sec::disconnect_during_handshake))
    return "the connection closed during the handshake (TLS on one side only, or a refused "
           "certificate)";
  if (is(err, caf::sec::request_receiver_down))
    return "the actor asked is gone (its process stopped)";
  return raw;
}

int probe_tcp(const host_port& where, int timeout_ms, bool* spoke_first) {
  addrinfo* ai = resolve(where, false);
  if (ai == nullptr)
    return -1;
  fd_guard s{::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK, ai->ai_protocol)};
  int r = s.fd < 0 ? errno : ::connect(s.fd, ai->ai_addr, ai->ai_addrlen) == 0 ? 0 : errno;
  ::freeaddrinfo(ai);
  if (r == EINPROGRESS) {
    if (!wait_for(s.fd, POLLOUT, timeout_ms))
      return ETIMEDOUT;
    socklen_t len = sizeof r;
    ::getsockopt(s.fd, SOL_SOCKET, SO_ERROR, &r, &len);
  }
  if (r == 0 && spoke_first != nullptr) {
    char byte = 0;
    *spoke_first = wait_for(s.fd, POLLIN, timeout_ms) && ::recv(s.fd, &byte, 1, 0) > 0;
  }
  return r;
}

connect_failure explain_connect_error(const caf::actor_system& sys, const caf::error& err,
                                      const std::string& peer, const host_port& where, bool tls) {
  logger("net")->debug("connect to {} at {}: {}", peer, where.to_string(), sys.render(err));
  const auto at = peer + " at " + where.to_string();
  if (!tls && is(err, caf::sec::disconnect_during_handshake))
    return {at + " requires TLS: pass --certs DIR (or --cert/--key/--ca) with this cluster's "
                 "certificates (see `troupe certs`)",
            false};
  bool spoke_first = false;
  int e = probe_tcp(where, 1000, tls ? &spoke_first : nullptr);
  if (e == ECONNREFUSED)
    return {"cannot reach " + at + ": is it running? (connection refused)", true};
  if (e == -1)
    return {"cannot reach " + at + ": the host name '" + where.host +
                "' does not resolve (check the address)",
            false};
  if (e != 0)
    return {"cannot reach " + at + ": is the address right and the host up? (" + system_text(e) +
                ")",
            true};
  if (tls && spoke_first)
    return {at + " speaks plain TCP (started with --insecure-plain): connect without --certs, "
                 "with --insecure-plain, or restart it with --certs DIR",
            false};
  if (tls && is(err, caf::sec::disconnect_during_handshake))
    return {"the TLS handshake with " + at +
                " failed: one side refused the other's certificate (not signed by the same "
                "cluster CA, or a name that does not match): pass --certs DIR with this "
                "cluster's ca.pem and a certificate issued by it (`troupe certs issue`)",
            false};
  // Something answers but the connection did not come up (a peer starting
  // or stopping, a stranger on the port): worth another try.
  return {"cannot reach " + at + ": it accepts connections but did not answer as troupe does (" +
              describe(sys, err) + ")",
          true};
}

std::string explain_listen_failure(const std::string& flag, const host_port& where,
                                   const std::string& fallback) {
  const auto head = flag + " " + where.to_string() + ": cannot listen: ";
  switch (int e = probe_bind(where)) {
  case EADDRINUSE:
    return head + "the port is in use by another process (pick another port, or stop the "
                  "process using it: `ss -ltnp`)";
  case EADDRNOTAVAIL:
    return head + "'" + where.host + "' is not an address of this machine";
  case EACCES:
    return head + "ports below 1024 need root (pick a port >= 1024)";
  case 0:
    return head + fallback;
  default:
    return head + system_text(e);
  }
}

std::string explain_listen_error(const caf::actor_system& sys, const caf::error& err,
                                 const std::string& flag, const host_port& where) {
  logger("net")->debug("publish on {}: {}", where.to_string(), sys.render(err));
  return explain_listen_failure(flag, where, describe(sys, err));
}

} // namespace troupe::runtime
