#include "runtime/telemetry/status_server.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <exception>
#include <optional>
#include <thread>
#include <utility>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "runtime/error.hpp"
#include "runtime/log.hpp"

namespace troupe::runtime {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;

namespace {

/// One connection: read one request (bounded header, no body, one deadline
/// for the whole exchange), write one reply, close.
class session : public std::enable_shared_from_this<session> {
public:
  session(tcp::socket socket, const status_server::handler_map& handlers,
          const status_server::options& opts, std::atomic<std::size_t>& active)
      : stream_(std::move(socket)), handlers_(handlers), opts_(opts), active_(active) {
    ++active_;
  }
  ~session() { --active_; }

  void start() {
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(opts_.max_header_bytes));
    parser_->body_limit(0);
    stream_.expires_after(opts_.timeout);
    http::async_read(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_read(ec); });
  }

private:
  void on_read(beast::error_code ec) {
    if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
        ec == asio::error::operation_aborted)
      return close();
    if (ec == http::error::header_limit)
      return reply_error(http::status::request_header_fields_too_large, "header too large\n");
    if (ec == http::error::body_limit || ec == http::error::unexpected_body)
      return reply_error(http::status::payload_too_large, "request bodies are not accepted\n");
    if (ec)
      return reply_error(http::status::bad_request, "bad request\n");
    const auto& req = parser_->get();
    // A body announced by a header but not yet read is refused too.
    if (req.has_content_length() || req[http::field::transfer_encoding].size() > 0)
      if (req.payload_size().value_or(1) != 0)
        return reply_error(http::status::payload_too_large, "request bodies are not accepted\n");
    auto tv = req.target();
    std::string target(tv.data(), tv.size());
    auto q = target.find('?');
    std::string path = target.substr(0, q);
    auto mv = req.method_string();
    std::string method(mv.data(), mv.size());
    auto it = handlers_.find(method + " " + path);
    if (it != handlers_.end()) {
      status_server::response r;
      try {
        r = it->second();
      } catch (const std::exception& e) {
        logger("status")->warn("handler for {} {} failed: {}", method, path, e.what());
        return reply_error(http::status::internal_server_error, "internal error\n");
      }
      return reply(http::status::ok, std::move(r.content_type), std::move(r.body));
    }
    bool path_known = false;
    for (const auto& [key, fn] : handlers_) {
      auto sp = key.find(' ');
      if (sp != std::string::npos && key.compare(sp + 1, std::string::npos, path) == 0)
        path_known = true;
    }
    if (path_known || req.method() != http::verb::get)
      return reply_error(http::status::method_not_allowed, "method not allowed\n");
    reply_error(http::status::not_found, "not found\n");
  }

  void reply_error(http::status status, std::string body) {
    reply(status, "text/plain; charset=utf-8", std::move(body));
  }

  void reply(http::status status, std::string content_type, std::string body) {
    auto res = std::make_shared<http::response<http::string_body>>(status, 11);
    res->set(http::field::server, "troupe");
    res->set(http::field::content_type, content_type);
    res->set(http::field::cache_control, "no-store");
    if (status == http::status::method_not_allowed)
      res->set(http::field::allow, "GET");
    res->keep_alive(false);
    res->body() = std::move(body);
    res->prepare_payload();
    // The deadline set before the read still covers the write.
    bool unread = status != http::status::ok;
    http::async_write(stream_, *res,
                      [self = shared_from_this(), res, unread](beast::error_code ec, std::size_t) {
                        if (unread && !ec)
                          self->linger();
                        else
                          self->close();
                      });
  }

  /// After an error reply the client may still be sending (an oversized
  /// header, a body): closing with unread data makes the kernel send a RST,
  /// which can destroy the reply before the client reads it. So stop sending,
  /// then discard what arrives, at most 64 KiB and 1 s, before closing.
  void linger() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    stream_.expires_after(
        std::min<std::chrono::milliseconds>(opts_.timeout, std::chrono::seconds(1)));
    drain();
  }

  void drain() {
    stream_.async_read_some(asio::buffer(discard_),
                            [self = shared_from_this()](beast::error_code ec, std::size_t n) {
                              self->drained_ += n;
                              if (ec || self->drained_ >= 65536)
                                return self->close();
                              self->drain();
                            });
  }

  void close() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    stream_.socket().close(ec);
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::empty_body>> parser_;
  const status_server::handler_map& handlers_;
  const status_server::options& opts_;
  std::atomic<std::size_t>& active_;
  std::array<char, 4096> discard_{};
  std::size_t drained_ = 0;
};

} // namespace

struct status_server::impl {
  impl(options o, handler_map h) : opts(std::move(o)), handlers(std::move(h)), acceptor(ioc) {}

  void accept() {
    acceptor.async_accept([this](beast::error_code ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted || !acceptor.is_open())
        return;
      if (!ec) {
        if (active.load() >= opts.max_connections) {
          beast::error_code ignored;
          socket.close(ignored);
        } else {
          std::make_shared<session>(std::move(socket), handlers, opts, active)->start();
        }
      }
      accept();
    });
  }

  options opts;
  handler_map handlers;
  std::atomic<std::size_t> active{0};
  asio::io_context ioc{1};
  tcp::acceptor acceptor;
  std::uint16_t port = 0;
  std::thread thread;
};

status_server::status_server(std::string address, std::uint16_t port, handler_map handlers)
    : status_server(options{std::move(address), port}, std::move(handlers)) {}

status_server::status_server(options opts, handler_map handlers)
    : impl_(std::make_unique<impl>(std::move(opts), std::move(handlers))) {
  auto& d = *impl_;
  if (d.opts.timeout.count() <= 0 || d.opts.max_connections == 0 || d.opts.max_header_bytes == 0)
    throw input_error("status server: timeout, max_connections and max_header_bytes must be > 0");
  beast::error_code ec;
  auto addr = asio::ip::make_address(d.opts.address, ec);
  if (ec)
    throw input_error("status server: invalid listen address '" + d.opts.address + "'");
  tcp::endpoint ep{addr, d.opts.port};
  auto fail = [&](const char* what) {
    throw input_error("status server: cannot " + std::string{what} + " " + d.opts.address + ":" +
                      std::to_string(d.opts.port) + ": " + ec.message());
  };
  d.acceptor.open(ep.protocol(), ec);
  if (ec)
    fail("open");
  d.acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  d.acceptor.bind(ep, ec);
  if (ec)
    fail("bind");
  d.acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    fail("listen on");
  d.port = d.acceptor.local_endpoint().port();
  d.accept();
  d.thread = std::thread([&d] {
    for (;;) {
      try {
        d.ioc.run();
        return;
      } catch (const std::exception& e) {
        logger("status")->error("status server I/O thread: {}", e.what());
      }
    }
  });
}

status_server::~status_server() {
  auto& d = *impl_;
  asio::post(d.ioc, [&d] {
    beast::error_code ec;
    d.acceptor.close(ec);
    d.ioc.stop();
  });
  if (d.thread.joinable())
    d.thread.join();
}

std::uint16_t status_server::port() const noexcept {
  return impl_->port;
}

} // namespace troupe::runtime
