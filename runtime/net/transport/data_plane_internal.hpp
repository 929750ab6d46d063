#pragma once

// Internals of the data plane shared by data_plane.cpp (the public API, the
// listener and the peer table) and connection.cpp (one TCP connection).
// Not part of the API: include data_plane.hpp.

#include <atomic>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/buffer.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include "runtime/log.hpp"
#include "runtime/net/transport/data_plane.hpp"
#include "runtime/net/transport/frame.hpp"

namespace troupe::runtime::transport {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost::system::error_code;

/// A frame waiting in a connection's write queue.
struct pending_send {
  encoded_frame_header header;
  tensor value;
  send_callback done;
  std::uint64_t wire_bytes = 0;
};

inline void complete(send_callback& done, std::optional<std::string> error) {
  if (done)
    done(std::move(error));
}

inline bool is_loopback(const asio::ip::address& a) {
  if (a.is_v6() && a.to_v6().is_v4_mapped())
    return asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6()).is_loopback();
  return a.is_loopback();
}

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
  std::set<std::shared_ptr<tcp::socket>> connecting_; // (io)
  bool stopping_ = false;                             // (io)
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
  void begin_handshake(connected_fn on_connected);
  void write_handshake(const handshake_bytes& msg, bool then_close);
  void after_handshake_step();
  void read_handshake();
  void establish();

  /// Queues frames of an established connection, in order and at once (one
  /// for send(), several for send_all()); any thread. When no write is under
  /// way, the calling thread writes them at once, non-blocking, rather than
  /// waking the io thread: a send/ack exchange otherwise pays a post and an
  /// epoll wake-up of the io thread per frame, which on a busy 2-core or
  /// virtualised machine costs as much as moving 1 MiB over loopback. What
  /// the socket does not take at once, the io thread writes.
  void submit(std::vector<pending_send> batch);

  /// Runs send callbacks on the io thread.
  void post_results(std::vector<send_callback> done, std::optional<std::string> error);

  /// Writes queued frames on the calling thread until the queue is empty
  /// (and gives up the writer role) or the socket is full (and hands the
  /// rest of the batch to the io thread). wmtx_ held, writing_ set, nothing
  /// in flight. The lock also keeps close() from closing (and the system
  /// from reusing) the descriptor during the sendmsg.
  void write_now(std::vector<send_callback>& done);

  /// Pops `n` completely written frames. wmtx_ held.
  void retire(std::size_t n, std::vector<send_callback>& done);

  /// The io thread finishes the in-flight batch, from byte sent_ on.
  void resume_write();
  void on_written(const error_code& ec);
  void read_header();
  void on_header(const error_code& ec);
  void deliver();

  /// `orderly`: the peer closed between frames (or said goodbye), so no
  /// frame was cut short.
  void close(const std::string& reason, bool orderly = false);

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

} // namespace troupe::runtime::transport
