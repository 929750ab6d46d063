#pragma once

// A small HTTP/1.1 server for the supervisor's `GET /status` (JSON) and
// `GET /metrics` (Prometheus text), on Boost.Beast with its own I/O thread so
// a scrape never runs on an actor's thread. It is deliberately minimal and
// defensive, since it listens on a socket: one request per connection
// (Connection: close), headers up to 8 KiB, no request bodies, a deadline per
// connection so a slow client cannot pin it, a cap on concurrent connections,
// and 127.0.0.1 unless told otherwise. Beast stays out of this header so only
// status_server.cpp pays for its compile time.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

namespace troupe::runtime {

class status_server {
public:
  /// What a handler returns: the Content-Type and the body of a 200 reply.
  struct response {
    std::string content_type;
    std::string body;
  };
  /// Runs on the server's I/O thread (one request at a time): it must be
  /// thread-safe with respect to whatever it reads. An exception becomes a 500.
  using handler = std::function<response()>;
  /// Keys are "METHOD /path", e.g. "GET /status"; the query string is ignored.
  using handler_map = std::map<std::string, handler>;

  struct options {
    std::string address = "127.0.0.1";
    std::uint16_t port = 0;                  ///< 0: an ephemeral port (see port())
    std::chrono::milliseconds timeout{5000}; ///< whole request + reply per connection
    std::size_t max_connections = 64;        ///< further connections are closed at once
    std::size_t max_header_bytes = 8192;
  };

  /// Binds and starts serving; throws input_error when the address does not
  /// parse or the port cannot be bound.
  status_server(std::string address, std::uint16_t port, handler_map handlers);
  status_server(options opts, handler_map handlers);
  /// Stops accepting, closes open connections and joins the I/O thread.
  ~status_server();

  status_server(const status_server&) = delete;
  status_server& operator=(const status_server&) = delete;

  /// The bound port (the ephemeral one when constructed with 0).
  std::uint16_t port() const noexcept;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace troupe::runtime
