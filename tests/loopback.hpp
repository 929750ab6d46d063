#pragma once

// A blocking TCP connection to 127.0.0.1:port for tests that speak raw bytes
// to a listening port (HTTP, BASP/TLS, the data plane).

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>

#include <boost/test/unit_test.hpp>

namespace troupe::test {

/// The connected socket; the test fails when it cannot connect.
inline int loopback_connect(std::uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  BOOST_REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  BOOST_REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  return fd;
}

} // namespace troupe::test
