#pragma once

// The data plane: bulk tensors between processes over TCP (Boost.Asio), next
// to CAF, which carries only descriptors that name a transfer id. One
// authenticated connection per peer pair; a frame is a fixed header
// (frame.hpp) followed by the tensor's bytes, written with one scatter/gather
// write straight from the tensor's storage and read straight into a freshly
// allocated storage of exactly the validated size.
//
// Threads: one io thread runs every socket operation and every callback,
// except that send() writes a frame to an established connection on the
// calling thread when nothing is being written to that peer (non-blocking;
// the io thread writes whatever the socket did not take): handing every frame
// to the io thread cost a thread wake-up per frame.
// send(), connect(), counters() and stop() may be called from any other
// thread (CAF actors). Callbacks must not block: they run on the io thread.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "runtime/net/tensor_codec.hpp"
#include "runtime/net/transport/auth.hpp"
#include "runtime/tensor.hpp"

namespace troupe::runtime::transport {

/// Per-peer traffic, counted when a frame has been completely written or
/// read. Bytes include the frame headers (what crossed the wire).
struct peer_counters {
  std::uint64_t bytes_sent = 0;
  std::uint64_t bytes_received = 0;
  std::uint64_t frames_sent = 0;
  std::uint64_t frames_received = 0;
};

/// Process-facing health figures (for /metrics and tests).
struct data_plane_stats {
  std::uint64_t connections_accepted = 0;
  std::uint64_t handshakes_failed = 0;       ///< wrong key, bad bytes, refused plain mode
  std::uint64_t handshake_timeouts = 0;      ///< peers that went silent during the handshake
  std::uint64_t frames_rejected = 0;         ///< frame headers that failed validation
  std::uint64_t payload_bytes_allocated = 0; ///< receive buffers allocated so far
};

struct data_plane_options {
  /// This node's name: announced in handshakes and used by peers to address it.
  std::string name;
  /// The pre-shared cluster key (generate_key / load_key).
  cluster_key key{};
  /// Unauthenticated mode, for local experiments only: refused unless both
  /// endpoints of every connection are loopback (listen() and connect() throw
  /// input_error otherwise). Both sides must enable it.
  bool insecure_plain_loopback = false;
  /// A connection that has not completed its handshake by then is dropped.
  std::chrono::milliseconds handshake_timeout{2000};
  /// Largest payload accepted from a peer (troupe.max-tensor-bytes).
  std::uint64_t max_payload_bytes = default_max_tensor_bytes;
  /// Carried in frame headers (informational).
  std::uint32_t node_id = 0;
};

/// Called once per send: nullopt when the frame was written to the socket,
/// else why it was not (peer unknown or down, data plane stopped).
using send_callback = std::function<void(std::optional<std::string> error)>;

struct data_plane_callbacks {
  /// A complete tensor from `peer`.
  std::function<void(const std::string& peer, std::uint64_t transfer_id, tensor value)> on_receive;
  /// An authenticated connection to `peer` is up.
  std::function<void(const std::string& peer)> on_peer_up;
  /// The last connection to `peer` died (not called for our own stop()).
  /// `orderly`: the peer closed it between frames with nothing of ours
  /// unsent (a process shutting down), not an error.
  std::function<void(const std::string& peer, const std::string& reason, bool orderly)>
      on_peer_down;
};

class data_plane {
public:
  /// Starts the io thread. Throws std::invalid_argument for an invalid name.
  data_plane(data_plane_options options, data_plane_callbacks callbacks);
  ~data_plane();
  data_plane(const data_plane&) = delete;
  data_plane& operator=(const data_plane&) = delete;

  /// Accepts peers on `address` ("127.0.0.1", "0.0.0.0", "::1", a host name);
  /// port 0 picks an ephemeral port. Returns the bound port. Throws
  /// input_error for a bad address or a non-loopback address in plain mode.
  std::uint16_t listen(const std::string& address, std::uint16_t port = 0);

  /// Connects to and authenticates `peer_name` (the name the peer must
  /// announce) at host:port; returns once the connection is usable, at once
  /// when `peer_name` is already connected (either direction). Throws
  /// input_error when it fails. Must not be called from a callback.
  void connect(const std::string& peer_name, const std::string& host, std::uint16_t port);
  /// The same without blocking: `done` runs on the io thread.
  void connect_async(const std::string& peer_name, const std::string& host, std::uint16_t port,
                     std::function<void(std::optional<std::string> error)> done);

  /// Queues `value` (a defined CPU tensor) for `peer`. The tensor's storage is
  /// written as is (no copy) and kept alive until the write completes; frames
  /// to one peer leave in send order. `done` (optional) runs on the io thread.
  void send(const std::string& peer, std::uint64_t transfer_id, tensor value,
            send_callback done = {});

  /// One frame of send_all().
  struct frame_to_send {
    std::uint64_t transfer_id = 0;
    tensor value;
  };
  /// Queues `frames` for `peer` as send() would, one after the other, but
  /// together: when nothing is being written to that peer, they leave in one
  /// sendmsg, so the receiver wakes once for all of them (a courier message
  /// is a descriptor and a payload frame; written apart, the receiver's io
  /// thread woke for the descriptor, then again for the payload). No
  /// completion callbacks: a frame fails only with its connection.
  void send_all(const std::string& peer, std::vector<frame_to_send> frames);

  /// Fault injection (tests, `--inject-fault`): aborts every connection to
  /// `peer` as a network cut would, mid-frame for whatever is in flight; the
  /// peer is reported down with reason "cut". An empty `peer`: every
  /// connection. Thread-safe.
  void cut(const std::string& peer);

  /// Names of the peers with an established connection.
  std::vector<std::string> peers() const;
  std::map<std::string, peer_counters> counters() const;
  std::optional<peer_counters> counters(const std::string& peer) const;
  data_plane_stats stats() const;
  const std::string& name() const noexcept;

  /// Closes every listener and connection, fails pending sends and joins the
  /// io thread. Idempotent; must not be called from a callback. Afterwards,
  /// send() and connect_async() fail their callbacks at once, on the caller's
  /// thread.
  void stop();

  class impl;

private:
  std::shared_ptr<impl> impl_;
};

} // namespace troupe::runtime::transport
