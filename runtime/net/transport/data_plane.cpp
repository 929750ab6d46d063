#include "runtime/net/transport/data_plane.hpp"

#include <future>
#include <stdexcept>
#include <system_error>

#include <boost/asio/connect.hpp>
#include <boost/asio/post.hpp>

#include "runtime/error.hpp"
#include "runtime/net/transport/data_plane_internal.hpp"

namespace troupe::runtime::transport {

void data_plane::impl::accept_loop(std::shared_ptr<tcp::acceptor> acc) {
  acc->async_accept([this, acc](const error_code& ec, tcp::socket sock) {
    if (stopping_ || !acc->is_open())
      return;
    if (!ec) {
      ++accepted_;
      auto c = std::make_shared<connection>(*this, std::move(sock), false, std::string{});
      connections_.insert(c);
      c->begin_handshake(nullptr);
    } else {
      log_->warn("data plane '{}': accept: {}", options_.name, ec.message());
    }
    accept_loop(acc);
  });
}

void data_plane::impl::connect_impl(const std::string& peer, const std::string& host,
                                    std::uint16_t port,
                                    std::function<void(std::optional<std::string>)> done) {
  if (stopping_)
    return done("data plane stopped");
  if (auto it = peers_.find(peer); it != peers_.end())
    return done(std::nullopt);
  auto resolver = std::make_shared<tcp::resolver>(io_);
  resolver->async_resolve(
      host, std::to_string(port),
      [this, resolver, peer, host, port, done](const error_code& ec,
                                               tcp::resolver::results_type results) {
        if (ec)
          return done("cannot resolve " + host + ": " + ec.message());
        if (options_.insecure_plain_loopback)
          for (const auto& r : results)
            if (!is_loopback(r.endpoint().address()))
              return done("plain (unauthenticated) mode is allowed only on loopback, not to " +
                          host);
        auto sock = std::make_shared<tcp::socket>(io_);
        connecting_.insert(sock);
        asio::async_connect(
            *sock, results,
            [this, sock, peer, host, port, done](const error_code& e, const tcp::endpoint&) {
              connecting_.erase(sock);
              if (e)
                return done("cannot connect to " + peer + " at " + host + ":" +
                            std::to_string(port) + ": " + e.message());
              if (stopping_)
                return done("data plane stopped");
              auto c = std::make_shared<connection>(*this, std::move(*sock), true, peer);
              connections_.insert(c);
              c->begin_handshake([done, peer](std::optional<std::string> err) {
                if (err)
                  return done("cannot connect to " + peer + ": " + *err);
                done(std::nullopt);
              });
            });
      });
}

void data_plane::impl::on_established(const std::shared_ptr<connection>& c) {
  // One connection per pair: when both sides connected at once, the first
  // established carries our sends; the other one is still read from.
  if (peers_.count(c->peer()) != 0)
    return;
  {
    std::lock_guard<std::mutex> g{mtx_};
    peers_[c->peer()] = c;
    counters_[c->peer()];
    up_.insert(c->peer());
  }
  log_->debug("data plane '{}': peer '{}' up", options_.name, c->peer());
  if (callbacks_.on_peer_up)
    callbacks_.on_peer_up(c->peer());
}

void data_plane::impl::on_closed(const std::shared_ptr<connection>& c, const std::string& reason,
                                 bool orderly) {
  connections_.erase(c);
  auto it = peers_.find(c->peer());
  if (!c->established() || it == peers_.end() || it->second != c)
    return;
  {
    std::lock_guard<std::mutex> g{mtx_};
    peers_.erase(it);
    for (const auto& other : connections_)
      if (other->established() && !other->closed() && other->peer() == c->peer()) {
        peers_[c->peer()] = other;
        return;
      }
    up_.erase(c->peer());
  }
  if (stopping_)
    return;
  log_->log(orderly ? spdlog::level::info : spdlog::level::warn,
            "data plane '{}': peer '{}' {}: {}", options_.name, c->peer(),
            orderly ? "closed the connection" : "down", reason);
  if (callbacks_.on_peer_down)
    callbacks_.on_peer_down(c->peer(), reason, orderly);
}

data_plane::data_plane(data_plane_options options, data_plane_callbacks callbacks)
    : impl_(std::make_shared<impl>(std::move(options), std::move(callbacks))) {
  impl_->start();
}

data_plane::~data_plane() {
  try {
    stop();
  } catch (...) {
  }
}

std::uint16_t data_plane::listen(const std::string& address, std::uint16_t port) {
  if (impl_->stopped_)
    throw std::logic_error("data plane: listen after stop");
  tcp::resolver resolver{impl_->io_};
  error_code ec;
  auto results = resolver.resolve(address, std::to_string(port),
                                  tcp::resolver::passive | tcp::resolver::numeric_service, ec);
  if (ec || results.empty())
    throw input_error("data plane: cannot listen on '" + address +
                      "': " + (ec ? ec.message() : std::string{"no address"}));
  auto ep = results.begin()->endpoint();
  if (impl_->options_.insecure_plain_loopback && !is_loopback(ep.address()))
    throw input_error("data plane: plain (unauthenticated) mode may listen only on loopback, "
                      "not on '" +
                      address + "'");
  auto acc = std::make_shared<tcp::acceptor>(impl_->io_);
  acc->open(ep.protocol(), ec);
  if (!ec)
    acc->set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec)
    acc->bind(ep, ec);
  if (!ec)
    acc->listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    throw input_error("data plane: cannot listen on " + address + ":" + std::to_string(port) +
                      ": " + ec.message());
  auto bound = acc->local_endpoint().port();
  asio::post(impl_->io_, [p = impl_, acc] {
    p->acceptors_.push_back(acc);
    p->accept_loop(acc);
  });
  return bound;
}

void data_plane::connect_async(const std::string& peer_name, const std::string& host,
                               std::uint16_t port,
                               std::function<void(std::optional<std::string>)> done) {
  if (!valid_party_name(peer_name))
    throw input_error("data plane: invalid peer name '" + peer_name + "'");
  if (!done)
    done = [](std::optional<std::string>) {};
  if (impl_->stopped_)
    return done("data plane stopped");
  asio::post(impl_->io_, [p = impl_, peer_name, host, port, done = std::move(done)]() mutable {
    bool called = false;
    p->connect_impl(peer_name, host, port,
                    [done = std::move(done), called](std::optional<std::string> e) mutable {
                      if (!std::exchange(called, true))
                        done(std::move(e));
                    });
  });
}

void data_plane::connect(const std::string& peer_name, const std::string& host,
                         std::uint16_t port) {
  if (impl_->on_io_thread())
    throw std::logic_error("data_plane::connect called from a data-plane callback");
  if (impl_->stopped_)
    throw std::logic_error("data plane: connect after stop");
  auto result = std::make_shared<std::promise<std::optional<std::string>>>();
  auto fut = result->get_future();
  connect_async(peer_name, host, port,
                [result](std::optional<std::string> e) { result->set_value(std::move(e)); });
  if (auto err = fut.get())
    throw input_error("data plane '" + impl_->options_.name + "': " + *err);
}

namespace {

/// A frame of `value` for the write queue.
pending_send frame_of(const data_plane_options& o, std::uint64_t transfer_id, tensor value,
                      send_callback done) {
  if (!value.defined() || !value.where().is_cpu())
    throw std::invalid_argument("data_plane::send: only defined CPU tensors can be sent");
  pending_send s;
  s.header = encode_frame_header(tensor_frame_header(transfer_id, value, o.node_id, 0));
  s.wire_bytes = frame_header_size + value.nbytes();
  s.value = std::move(value);
  s.done = std::move(done);
  return s;
}

/// Hands `batch` to the connection to `peer`: on the calling thread when it
/// is established, else through the io thread (which fails it when the peer
/// is not connected).
void dispatch(const std::shared_ptr<data_plane::impl>& p, const std::string& peer,
              std::vector<pending_send> batch) {
  std::shared_ptr<connection> c;
  {
    std::lock_guard<std::mutex> g{p->mtx_};
    if (auto it = p->peers_.find(peer); it != p->peers_.end())
      c = it->second;
  }
  if (c)
    return c->submit(std::move(batch)); // fails it if the connection closed meanwhile
  asio::post(p->io_, [p, peer, batch = std::move(batch)]() mutable {
    std::optional<std::string> error;
    if (p->stopping_)
      error = "data plane stopped";
    else if (auto it = p->peers_.find(peer); it == p->peers_.end())
      error = "peer '" + peer + "' is not connected";
    else
      return it->second->submit(std::move(batch));
    for (auto& s : batch)
      complete(s.done, error);
  });
}

} // namespace

void data_plane::send(const std::string& peer, std::uint64_t transfer_id, tensor value,
                      send_callback done) {
  auto s = frame_of(impl_->options_, transfer_id, std::move(value), std::move(done));
  if (impl_->stopped_)
    return complete(s.done, "data plane stopped");
  std::vector<pending_send> one;
  one.push_back(std::move(s));
  dispatch(impl_, peer, std::move(one));
}

void data_plane::send_all(const std::string& peer, std::vector<frame_to_send> frames) {
  std::vector<pending_send> batch;
  batch.reserve(frames.size());
  for (auto& f : frames)
    batch.push_back(frame_of(impl_->options_, f.transfer_id, std::move(f.value), {}));
  if (impl_->stopped_ || batch.empty())
    return;
  dispatch(impl_, peer, std::move(batch));
}

std::vector<std::string> data_plane::peers() const {
  std::lock_guard<std::mutex> g{impl_->mtx_};
  return {impl_->up_.begin(), impl_->up_.end()};
}

std::map<std::string, peer_counters> data_plane::counters() const {
  std::lock_guard<std::mutex> g{impl_->mtx_};
  return impl_->counters_;
}

std::optional<peer_counters> data_plane::counters(const std::string& peer) const {
  std::lock_guard<std::mutex> g{impl_->mtx_};
  if (auto it = impl_->counters_.find(peer); it != impl_->counters_.end())
    return it->second;
  return std::nullopt;
}

data_plane_stats data_plane::stats() const {
  return {impl_->accepted_.load(), impl_->hs_failed_.load(), impl_->hs_timeouts_.load(),
          impl_->rejected_.load(), impl_->allocated_.load()};
}

const std::string& data_plane::name() const noexcept {
  return impl_->options_.name;
}

void data_plane::cut(const std::string& peer) {
  asio::post(impl_->io_, [p = impl_, peer] {
    auto all = p->connections_;
    for (auto& c : all)
      if (peer.empty() || c->peer() == peer)
        c->close("cut");
  });
}

void data_plane::stop() {
  if (impl_->on_io_thread())
    throw std::logic_error("data_plane::stop called from a data-plane callback");
  if (impl_->stopped_.exchange(true))
    return;
  asio::post(impl_->io_, [p = impl_] {
    p->stopping_ = true;
    for (auto& acc : p->acceptors_) {
      error_code ec;
      acc->close(ec);
    }
    p->acceptors_.clear();
    for (auto& s : p->connecting_) {
      error_code ec;
      s->close(ec);
    }
    p->connecting_.clear();
    auto all = p->connections_;
    for (auto& c : all)
      c->close("data plane stopped");
    std::lock_guard<std::mutex> g{p->mtx_};
    p->peers_.clear();
  });
  impl_->work_.reset();
  if (impl_->thread_.joinable())
    impl_->thread_.join();
  // Handlers posted by sends that raced with stop(): they fail their
  // callbacks (on this thread) instead of vanishing.
  impl_->io_.restart();
  impl_->io_.poll();
}

} // namespace troupe::runtime::transport
