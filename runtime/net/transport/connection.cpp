// One data-plane connection: the handshake, the read loop and the write
// queue (runtime/net/transport/data_plane_internal.hpp declares it).

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <cerrno>
#include <cstring>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include "runtime/error.hpp"
#include "runtime/net/transport/data_plane_internal.hpp"

namespace troupe::runtime::transport {

namespace {

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

} // namespace

void connection::begin_handshake(connected_fn on_connected) {
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
      return close("plain (unauthenticated) mode is allowed only on loopback, not to " + remote_);
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

void connection::write_handshake(const handshake_bytes& msg, bool then_close) {
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

void connection::after_handshake_step() {
  if (hs_->status() == handshake::state::done)
    return establish();
  read_handshake();
}

void connection::read_handshake() {
  asio::async_read(
      sock_, asio::buffer(hs_in_), [self = shared_from_this()](const error_code& ec, std::size_t) {
        if (self->closed_)
          return;
        if (ec)
          return self->close("handshake read: " + ec.message());
        auto reply = self->hs_->on_message(self->hs_in_);
        if (self->hs_->status() == handshake::state::failed) {
          ++self->dp_.hs_failed_;
          self->dp_.log_->warn("data plane '{}': handshake with {} failed: {}",
                               self->dp_.options_.name, self->remote_, self->hs_->error());
          if (reply)
            return self->write_handshake(*reply, true);
          return self->close(self->hs_->error());
        }
        if (reply)
          return self->write_handshake(*reply, false);
        self->after_handshake_step();
      });
}

void connection::establish() {
  established_ = true;
  peer_ = hs_->peer_name();
  timer_.cancel();
  dp_.on_established(shared_from_this());
  if (on_connected_)
    std::exchange(on_connected_, nullptr)(std::nullopt);
  read_header();
}

void connection::submit(std::vector<pending_send> batch) {
  std::vector<send_callback> done;
  {
    std::unique_lock<std::mutex> lk{wmtx_};
    if (closed_) {
      lk.unlock();
      for (auto& s : batch)
        done.push_back(std::move(s.done));
      return post_results(std::move(done), "connection to " + peer_ + " is closed");
    }
    for (auto& s : batch)
      queue_.push_back(std::move(s));
    if (writing_)
      return; // the writer (another thread or the io thread) takes them
    writing_ = true;
    write_now(done);
  }
  // Never inside the caller's send(): it may hold locks the callback takes.
  post_results(std::move(done), std::nullopt);
}

void connection::post_results(std::vector<send_callback> done, std::optional<std::string> error) {
  std::erase_if(done, [](const send_callback& f) { return !f; });
  if (!done.empty())
    asio::post(dp_.io_, [done = std::move(done), error]() mutable {
      for (auto& f : done)
        f(error);
    });
}

void connection::write_now(std::vector<send_callback>& done) {
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

void connection::retire(std::size_t n, std::vector<send_callback>& done) {
  for (std::size_t i = 0; i < n; ++i) {
    auto s = std::move(queue_.front());
    queue_.pop_front();
    dp_.count(peer_, s.wire_bytes, true);
    if (s.done)
      done.push_back(std::move(s.done));
  }
}

void connection::resume_write() {
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
  asio::async_write(
      sock_, buffers_, transfer_rest{asio::buffer_size(buffers_)},
      [self = shared_from_this()](const error_code& ec, std::size_t) { self->on_written(ec); });
}

void connection::on_written(const error_code& ec) {
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

void connection::read_header() {
  asio::async_read(
      sock_, asio::buffer(rx_header_),
      [self = shared_from_this()](const error_code& ec, std::size_t) { self->on_header(ec); });
}

void connection::on_header(const error_code& ec) {
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

void connection::deliver() {
  dp_.count(peer_, frame_header_size + rx_frame_.payload_bytes(), false);
  auto value = std::move(rx_tensor_);
  rx_tensor_ = tensor{};
  read_header(); // keep reading while the callback runs
  if (dp_.callbacks_.on_receive)
    dp_.callbacks_.on_receive(peer_, rx_frame_.transfer_id, std::move(value));
}

void connection::close(const std::string& reason, bool orderly) {
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

} // namespace troupe::runtime::transport
