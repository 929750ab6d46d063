#include "runtime/net/transport/data_plane.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <deque>
#include <future>
#include <mutex>
#include <set>
#include <stdexcept>
#include <system_error>
#include <thread>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

#include "runtime/error.hpp"
#include "runtime/log.hpp"
#include "runtime/net/transport/frame.hpp"

namespace troupe::runtime::transport {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost::system::error_code;

namespace {

bool is_loopback(const asio::ip::address& a) {
  if (a.is_v6() && a.to_v6().is_v4_mapped())
    return asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6()).is_loopback();
  return a.is_loopback();
}

/// Frames gathered into one write at most (header + payload each).
constexpr std::size_t max_frames_per_write = 16;

/// Completion condition "everything that is left, in one call". Asio's
/// transfer_all caps every read_some/write_some at 64 KiB
/// (default_max_transfer_size), so a 1 MiB frame took 16+ system calls and
/// as many trips through the io_context's queue on each side.
struct transfer_rest {
  std::size_t total;
  std::size_t operator()(const error_code& ec, std::size_t done) const noexcept {
    return ec || done >= total ? 0 : total - done;
  }
};

/// On loopback, a pacing congestion control (bbr, the system default here)
/// arms a pacing timer for every segment it sends: at 64 KiB segments that
/// was ~15% of a process's CPU in a 4-rank all-reduce and it throttles bulk
/// sends by a per-connection bandwidth estimate. A loopback link has no
/// congestion to control: use the first of cubic or reno the system allows
/// for this socket (best effort; the default stays on failure).
void unpaced_congestion_control(int fd) {
  for (const char* cc : {"cubic", "reno"})
    if (::setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, cc,
                     static_cast<socklen_t>(std::strlen(cc))) == 0)
      return;
}

struct pending_send {
  encoded_frame_header header;
  tensor value;
  send_callback done;
  std::uint64_t wire_bytes = 0;
};

void complete(send_callback& done, std::optional<std::string> error) {
  if (done)
    done(std::move(error));
}

} // namespace

class connection;

class data_plane::impl : public std::enable_shared_from_this<data_plane::impl> {
public:
  impl(data_plane_options options, data_plane_callbacks callbacks)
    : options_(std::move(options)), callbacks_(std::move(callbacks)), log_(logger("dataplane")),
      work_(asio::make_work_guard(io_)) {
    if (!valid_party_name(options_.name))
      throw std::invalid_argument("data plane: invalid node name '" + options_.name +
                                  "' (1-64 printable characters, no spaces)");
  }

  void start() {
    thread_ = std::thread([this] { run(); });
    io_thread_id_ = thread_.get_id();
  }

  void run() {
    for (;;) {
      try {
        io_.run();
        return;
      } catch (const std::exception& e) {
        // A throwing user callback must not take the io thread down.
        log_->error("data plane '{}': callback threw: {}", options_.name, e.what());
      }
    }
  }

  bool on_io_thread() const { return std::this_thread::get_id() == io_thread_id_; }

  // All members below marked (io) are touched on the io thread only.
  data_plane_options options_;
  data_plane_callbacks callbacks_;
  std::shared_ptr<spdlog::logger> log_;
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::thread thread_;
  std::thread::id io_thread_id_;
  std::vector<std::shared_ptr<tcp::acceptor>> acceptors_; // (io)
  std::set<std::shared_ptr<connection>> connections_;     // (io)
  /// (io) Written on the io thread under mtx_; send() reads it under mtx_.
  std::map<std::string, std::shared_ptr<connection>> peers_;
  std::set<std::shared_ptr<tcp::socket>> connecting_;         // (io)
  bool stopping_ = false;                                    // (io)
  std::atomic<bool> stopped_{false};

  mutable std::mutex mtx_; // guards counters_, up_, writes of peers_
  std::map<std::string, peer_counters> counters_;
  std::set<std::string> up_;
  std::atomic<std::uint64_t> accepted_{0}, hs_failed_{0}, hs_timeouts_{0}, rejected_{0},
    allocated_{0};

  void accept_loop(std::shared_ptr<tcp::acceptor> acc);
  void connect_impl(const std::string& peer, const std::string& host, std::uint16_t port,
                    std::function<void(std::optional<std::string>)> done);
  void on_established(const std::shared_ptr<connection>& c);
  void on_closed(const std::shared_ptr<connection>& c, const std::string& reason, bool orderly);
  void count(const std::string& peer, std::uint64_t bytes, bool sent) {
    std::lock_guard<std::mutex> g{mtx_};
    auto& pc = counters_[peer];
    if (sent) {
      pc.bytes_sent += bytes;
      ++pc.frames_sent;
    } else {
      pc.bytes_received += bytes;
      ++pc.frames_received;
    }
  }
};

/// One TCP connection: handshake, then a read loop and a write queue.
class connection : public std::enable_shared_from_this<connection> {
public:
  using connected_fn = std::function<void(std::optional<std::string>)>;

  connection(data_plane::impl& dp, tcp::socket sock, bool outgoing, std::string expected_peer)
    : dp_(dp), sock_(std::move(sock)), timer_(dp.io_), outgoing_(outgoing),
      expected_peer_(std::move(expected_peer)) {}

  const std::string& peer() const noexcept { return peer_; }
  bool established() const noexcept { return established_; }
  bool closed() const noexcept { return closed_; }

  void begin_handshake(connected_fn on_connected) {
    on_connected_ = std::move(on_connected);
    error_code ec;
    sock_.set_option(tcp::no_delay(true), ec);
    auto local = sock_.local_endpoint(ec);
    auto remote = sock_.remote_endpoint(ec);
    if (ec)
      return close("socket: " + ec.message());
    bool loopback = is_loopback(local.address()) && is_loopback(remote.address());
    if (loopback)
      unpaced_congestion_control(sock_.native_handle());
    remote_ = remote.address().to_string() + ":" + std::to_string(remote.port());
    auto mode = dp_.options_.insecure_plain_loopback ? auth_mode::plain : auth_mode::hmac;
    if (outgoing_) {
      if (mode == auth_mode::plain && !loopback)
        return close("plain (unauthenticated) mode is allowed only on loopback, not to " +
                     remote_);
      hs_.emplace(handshake::client(dp_.options_.key, dp_.options_.name, expected_peer_, mode));
    } else {
      hs_.emplace(handshake::server(dp_.options_.key, dp_.options_.name, mode, loopback));
    }
    timer_.expires_after(dp_.options_.handshake_timeout);
    timer_.async_wait([self = shared_from_this()](const error_code& e) {
      if (e || self->established_ || self->closed_)
        return;
      ++self->dp_.hs_timeouts_;
      self->dp_.log_->warn("data plane '{}': handshake with {} timed out", self->dp_.options_.name,
                           self->remote_);
      self->close("handshake timed out");
    });
    if (auto hello = hs_->start())
      write_handshake(*hello, false);
    else
      read_handshake();
  }

  void write_handshake(const handshake_bytes& msg, bool then_close) {
    hs_out_ = msg;
    asio::async_write(sock_, asio::buffer(hs_out_),
                      [self = shared_from_this(), then_close](const error_code& ec, std::size_t) {
                        if (self->closed_)
                          return;
                        if (ec)
                          return self->close("handshake write: " + ec.message());
                        if (then_close)
                          return self->close(self->hs_->error());
                        self->after_handshake_step();
                      });
  }

  void after_handshake_step() {
    if (hs_->status() == handshake::state::done)
      return establish();
    read_handshake();
  }

  void read_handshake() {
    asio::async_read(sock_, asio::buffer(hs_in_),
                     [self = shared_from_this()](const error_code& ec, std::size_t) {
                       if (self->closed_)
                         return;
                       if (ec)
                         return self->close("handshake read: " + ec.message());
                       auto reply = self->hs_->on_message(self->hs_in_);
                       if (self->hs_->status() == handshake::state::failed) {
                         ++self->dp_.hs_failed_;
                         self->dp_.log_->warn("data plane '{}': handshake with {} failed: {}",
                                              self->dp_.options_.name, self->remote_,
                                              self->hs_->error());
                         if (reply)
                           return self->write_handshake(*reply, true);
                         return self->close(self->hs_->error());
                       }
                       if (reply)
                         return self->write_handshake(*reply, false);
                       self->after_handshake_step();
                     });
  }

  void establish() {
    established_ = true;
    peer_ = hs_->peer_name();
    timer_.cancel();
    dp_.on_established(shared_from_this());
    if (on_connected_)
      std::exchange(on_connected_, nullptr)(std::nullopt);
    read_header();
  }

  /// Queues a frame of an established connection; any thread. When no write
  /// is under way, the calling thread writes it at once, non-blocking, rather
  /// than waking the io thread: a send/ack exchange otherwise pays a post and
  /// an epoll wake-up of the io thread per frame, which on a busy 2-core or
  /// virtualised machine costs as much as moving 1 MiB over loopback. What
  /// the socket does not take at once, the io thread writes.
  void submit(pending_send s) {
    std::vector<send_callback> done;
    {
      std::unique_lock<std::mutex> lk{wmtx_};
      if (closed_) {
        lk.unlock();
        return post_results({std::move(s.done)}, "connection to " + peer_ + " is closed");
      }
      queue_.push_back(std::move(s));
      if (writing_)
        return; // the writer (another thread or the io thread) takes it
      writing_ = true;
      write_now(done);
    }
    // Never inside the caller's send(): it may hold locks the callback takes.
    post_results(std::move(done), std::nullopt);
  }

  /// Runs send callbacks on the io thread.
  void post_results(std::vector<send_callback> done, std::optional<std::string> error) {
    std::erase_if(done, [](const send_callback& f) { return !f; });
    if (!done.empty())
      asio::post(dp_.io_, [done = std::move(done), error]() mutable {
        for (auto& f : done)
          f(error);
      });
  }

  /// Writes queued frames on the calling thread until the queue is empty
  /// (and gives up the writer role) or the socket is full (and hands the
  /// rest of the batch to the io thread). wmtx_ held, writing_ set, nothing
  /// in flight. The lock also keeps close() from closing (and the system
  /// from reusing) the descriptor during the sendmsg.
  void write_now(std::vector<send_callback>& done) {
    while (!queue_.empty()) {
      std::array<iovec, 2 * max_frames_per_write> iov{};
      std::size_t parts = 0, total = 0;
      const auto batch = std::min(queue_.size(), max_frames_per_write);
      for (std::size_t i = 0; i < batch; ++i) {
        auto& s = queue_[i];
        iov[parts++] = {s.header.data(), s.header.size()};
        total += s.header.size();
        if (auto n = s.value.nbytes(); n > 0) {
          iov[parts++] = {const_cast<void*>(s.value.raw_data()), n};
          total += n;
        }
      }
      msghdr m{};
      m.msg_iov = iov.data();
      m.msg_iovlen = parts;
      ssize_t k = 0;
      do
        k = ::sendmsg(sock_.native_handle(), &m, MSG_DONTWAIT | MSG_NOSIGNAL);
      while (k < 0 && errno == EINTR);
      if (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
        // The writer role stays taken: the io thread closes the connection
        // and fails what is queued.
        auto reason = "write: " + std::error_code{errno, std::system_category()}.message();
        asio::post(dp_.io_, [self = shared_from_this(), reason] { self->close(reason); });
        return;
      }
      const auto written = k < 0 ? std::size_t{0} : static_cast<std::size_t>(k);
      if (written < total) {
        in_flight_ = batch;
        sent_ = written;
        asio::post(dp_.io_, [self = shared_from_this()] { self->resume_write(); });
        return;
      }
      retire(batch, done);
    }
    writing_ = false;
  }

  /// Pops `n` completely written frames. wmtx_ held.
  void retire(std::size_t n, std::vector<send_callback>& done) {
    for (std::size_t i = 0; i < n; ++i) {
      auto s = std::move(queue_.front());
      queue_.pop_front();
      dp_.count(peer_, s.wire_bytes, true);
      if (s.done)
        done.push_back(std::move(s.done));
    }
  }

  /// The io thread finishes the in-flight batch, from byte sent_ on.
  void resume_write() {
    std::unique_lock<std::mutex> lk{wmtx_};
    if (closed_) {
      writing_ = false; // close() failed the queue; no write was started
      return;
    }
    buffers_.clear();
    std::size_t skip = sent_;
    auto add = [&](const void* p, std::size_t n) {
      if (skip >= n) {
        skip -= n;
        return;
      }
      buffers_.emplace_back(static_cast<const std::byte*>(p) + skip, n - skip);
      skip = 0;
    };
    for (std::size_t i = 0; i < in_flight_; ++i) {
      auto& s = queue_[i];
      add(s.header.data(), s.header.size());
      if (auto n = s.value.nbytes(); n > 0)
        add(s.value.raw_data(), n);
    }
    async_writing_ = true;
    lk.unlock(); // no other thread writes while writing_ is set
    asio::async_write(sock_, buffers_, transfer_rest{asio::buffer_size(buffers_)},
                      [self = shared_from_this()](const error_code& ec, std::size_t) {
                        self->on_written(ec);
                      });
  }

  void on_written(const error_code& ec) {
    std::vector<send_callback> done;
    {
      std::lock_guard<std::mutex> lk{wmtx_};
      async_writing_ = false;
      retired_.clear(); // tensors of a write that close() failed early
      if (closed_) {
        writing_ = false;
        return;
      }
      if (!ec) {
        retire(in_flight_, done);
        in_flight_ = 0;
        sent_ = 0;
        write_now(done); // the frames queued meanwhile
      }
    }
    if (ec)
      return close("write: " + ec.message());
    for (auto& f : done)
      f(std::nullopt);
  }

  void read_header() {
    asio::async_read(sock_, asio::buffer(rx_header_),
                     [self = shared_from_this()](const error_code& ec, std::size_t) {
                       self->on_header(ec);
                     });
  }

  void on_header(const error_code& ec) {
    if (closed_)
      return;
    if (ec)
      return ec == asio::error::eof // between frames: nothing was cut short
                 ? close("connection closed by peer", true)
                 : close("read: " + ec.message());
    try {
      rx_frame_ = decode_frame_header(rx_header_, {dp_.options_.max_payload_bytes});
    } catch (const input_error& e) {
      ++dp_.rejected_;
      dp_.log_->warn("data plane '{}': from {}: {}", dp_.options_.name, peer_, e.what());
      return close(e.what());
    }
    if (rx_frame_.kind == frame_kind::close)
      return close("peer said goodbye", true);
    // Only now, with the header validated, is anything allocated.
    auto n = rx_frame_.payload_bytes();
    dp_.allocated_ += n;
    try {
      rx_tensor_ = tensor::empty(rx_frame_.tensor.type, rx_frame_.tensor.shape);
    } catch (const std::exception& e) {
      return close(std::string{"cannot allocate the payload: "} + e.what());
    }
    if (n == 0)
      return deliver();
    asio::async_read(sock_, asio::buffer(rx_tensor_.mutable_raw_data(), n), transfer_rest{n},
                     [self = shared_from_this()](const error_code& e, std::size_t) {
                       if (self->closed_)
                         return;
                       if (e)
                         return self->close("read (truncated frame): " + e.message());
                       self->deliver();
                     });
  }

  void deliver() {
    dp_.count(peer_, frame_header_size + rx_frame_.payload_bytes(), false);
    auto value = std::move(rx_tensor_);
    rx_tensor_ = tensor{};
    read_header(); // keep reading while the callback runs
    if (dp_.callbacks_.on_receive)
      dp_.callbacks_.on_receive(peer_, rx_frame_.transfer_id, std::move(value));
  }

  /// `orderly`: the peer closed between frames (or said goodbye), so no
  /// frame was cut short.
  void close(const std::string& reason, bool orderly = false) {
    if (closed_)
      return;
    std::deque<pending_send> failed;
    {
      // Waits out a sendmsg on another thread, which then sees closed_.
      std::lock_guard<std::mutex> lk{wmtx_};
      closed_ = true;
      error_code ec;
      timer_.cancel();
      sock_.shutdown(tcp::socket::shutdown_both, ec);
      sock_.close(ec);
      failed = std::move(queue_);
      queue_.clear();
      // Entries being written stay alive until the aborted write completes.
      if (async_writing_)
        for (std::size_t i = 0; i < in_flight_ && i < failed.size(); ++i)
          retired_.push_back(failed[i].value);
      else
        writing_ = false;
      in_flight_ = 0;
      sent_ = 0;
    }
    for (auto& s : failed)
      complete(s.done, "connection to " + (peer_.empty() ? remote_ : peer_) + " lost: " + reason);
    if (on_connected_)
      std::exchange(on_connected_, nullptr)(reason);
    dp_.on_closed(shared_from_this(), reason, orderly && failed.empty());
  }

private:
  data_plane::impl& dp_;
  tcp::socket sock_;
  asio::steady_timer timer_;
  bool outgoing_;
  std::string expected_peer_;
  std::string peer_;
  std::string remote_ = "?";
  std::optional<handshake> hs_;
  handshake_bytes hs_in_{};
  handshake_bytes hs_out_{};
  connected_fn on_connected_;
  bool established_ = false;
  bool closed_ = false; ///< written on the io thread under wmtx_
  /// Guards the write side below; senders on any thread take it (submit).
  std::mutex wmtx_;
  bool writing_ = false;       ///< a thread or the io thread owns the writes
  bool async_writing_ = false; ///< an asio write of the batch is under way
  std::size_t in_flight_ = 0;  ///< frames at the queue's front being written
  std::size_t sent_ = 0;       ///< bytes of them written before the io thread took over
  std::deque<pending_send> queue_;
  std::vector<tensor> retired_;
  std::vector<asio::const_buffer> buffers_;
  encoded_frame_header rx_header_{};
  frame_header rx_frame_;
  tensor rx_tensor_;
};

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
            return done("cannot connect to " + peer + " at " + host + ":" + std::to_string(port) +
                        ": " + e.message());
          if (stopping_)
            return done("data plane stopped");
          auto c = std::make_shared<connection>(*this, std::move(*sock), true, peer);
          connections_.insert(c);
          c->begin_handshake(
            [done, peer](std::optional<std::string> err) {
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
  log_->log(orderly ? spdlog::level::info : spdlog::level::warn, "data plane '{}': peer '{}' {}: {}",
            options_.name, c->peer(), orderly ? "closed the connection" : "down", reason);
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
    throw input_error("data plane: cannot listen on '" + address + "': " +
                      (ec ? ec.message() : std::string{"no address"}));
  auto ep = results.begin()->endpoint();
  if (impl_->options_.insecure_plain_loopback && !is_loopback(ep.address()))
    throw input_error("data plane: plain (unauthenticated) mode may listen only on loopback, "
                      "not on '" + address + "'");
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

void data_plane::send(const std::string& peer, std::uint64_t transfer_id, tensor value,
                      send_callback done) {
  if (!value.defined() || !value.where().is_cpu())
    throw std::invalid_argument("data_plane::send: only defined CPU tensors can be sent");
  if (impl_->stopped_) {
    if (done)
      done("data plane stopped");
    return;
  }
  pending_send s;
  s.header = encode_frame_header(
    tensor_frame_header(transfer_id, value, impl_->options_.node_id, 0));
  s.wire_bytes = frame_header_size + value.nbytes();
  s.value = std::move(value);
  s.done = std::move(done);
  std::shared_ptr<connection> c;
  {
    std::lock_guard<std::mutex> g{impl_->mtx_};
    if (auto it = impl_->peers_.find(peer); it != impl_->peers_.end())
      c = it->second;
  }
  if (c)
    return c->submit(std::move(s)); // fails it if the connection closed meanwhile
  asio::post(impl_->io_, [p = impl_, peer, s = std::move(s)]() mutable {
    if (p->stopping_)
      return complete(s.done, "data plane stopped");
    auto it = p->peers_.find(peer);
    if (it == p->peers_.end())
      return complete(s.done, "peer '" + peer + "' is not connected");
    it->second->submit(std::move(s));
  });
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

const std::string& data_plane::name() const noexcept { return impl_->options_.name; }

void data_plane::cut(const std::string& peer) {
  asio::post(impl_->io_, [p = impl_, peer] {
    auto all = p->connections_;
    for (auto& c : all)
      if (c->peer() == peer)
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
