#pragma once

// The courier: how a tensor message reaches an actor in another process.
// CAF's BASP serialises a message inline (slow for bulk, < 4 GiB), so a
// message whose tensor is large travels in two halves: the tensor over the
// data plane (zero copy, scatter/gather) and a small descriptor (the message
// without its tensor), which the destination process's courier pairs with it
// before sending the reassembled message to its destination locally. The
// destination actor sees the ordinary message. Which messages may travel so,
// and where their tensor is, is the actor system's tensor_message_registry
// (system_config): the courier itself knows no message type. send() puts the
// descriptor on the data plane too, as a frame just before the payload on the
// same connection (transfer id with the top bit set), so the receiving io
// thread hands the message over without CAF's middleman threads or the
// courier actor; descriptors that arrive through CAF at the courier actor
// (endpoint()) are paired the same way.
//
// Threads: send() may be called from any thread (actors, device threads). The
// failure handler runs on the data plane's io thread, on a CAF worker or on
// the thread calling stop(): it must not block and must not call stop().
//
// Ordering: unlike plain anon_send, no FIFO between a sender and a receiver.
// A large message is delivered when the later of its two halves arrives, so
// it may overtake, or be overtaken by, any other message to the same actor.
// Receivers key messages by (step, mb) or (op, step, segment) and must not
// rely on arrival order.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/send.hpp>

#include "runtime/net/tensor_codec.hpp"
#include "runtime/net/transport/auth.hpp"
#include "runtime/net/transport/data_plane.hpp"
#include "runtime/net/transport/tensor_message_registry.hpp"
#include "runtime/net/transport/transfer_descriptor.hpp"

namespace troupe::runtime::transport {

struct courier_options {
  std::string name;  // this process's data-plane name (node name)
  cluster_key key{}; // HMAC key (runtime/net/transport/auth.hpp)
  bool insecure_plain_loopback = false;
  /// Tensors above go over the data plane. 4 KiB, not 64: a message through
  /// CAF takes the middleman's thread on both sides (two more thread
  /// wake-ups per hop than the data plane), which made a 4-rank all-reduce
  /// of 16-256 KiB (tree messages, ring blocks of <= 64 KiB) 1.3-2x slower.
  std::uint64_t threshold_bytes = 4 * 1024;
  std::uint64_t max_payload_bytes = default_max_tensor_bytes;
  std::uint64_t max_unmatched_bytes = 1ull << 30;
};

struct transport_counters {
  std::uint64_t messages = 0;
  std::uint64_t bytes = 0; ///< tensor payload bytes
};

class courier {
public:
  /// Starts the data plane and spawns the courier actor in `sys`; listens on
  /// host:port (0 = ephemeral). Routes the tensor messages registered in
  /// `sys`'s system_config (tensor_messages). Throws input_error for a bad
  /// address and std::invalid_argument for an invalid name or a system not
  /// configured by system_config. `sys` must outlive the
  /// courier, and the courier must be stopped before `sys` is destroyed (its
  /// actor keeps the actor system's destructor waiting).
  static std::shared_ptr<courier> start(caf::actor_system& sys, courier_options opts,
                                        const std::string& listen_host, std::uint16_t port = 0);
  ~courier(); // stops
  courier(const courier&) = delete;
  courier& operator=(const courier&) = delete;

  std::uint16_t port() const;
  const std::string& name() const;
  /// The actor that receives descriptors for this process.
  caf::actor endpoint() const;

  /// Registers a peer process: its data-plane name/host/port and its courier
  /// endpoint actor (whose .node() identifies which destination actors live
  /// there). Connects the data plane asynchronously (either side may connect
  /// first; connecting twice is fine); `done` runs once the connection is up
  /// or failed, on the io thread. Until the connection is up, messages to
  /// that peer travel inline through CAF. When a registered peer's
  /// connection is lost (mid-frame, a cut), the courier connects again
  /// once; meanwhile, and if that fails (the peer is gone), messages travel
  /// inline.
  void add_peer(const std::string& name, const std::string& host, std::uint16_t port,
                caf::actor peer_endpoint, std::function<void(std::optional<std::string>)> done);
  /// Called for a peer whose data-plane connection died (which is how a
  /// failed data-plane send shows), a payload that does not match its
  /// descriptor, a descriptor frame that does not decode or names another
  /// sender or process, or too many unmatched payload bytes from one peer.
  /// May be called more than once per peer. Not called when the peer closed
  /// the connection between frames with nothing lost (a process shutting
  /// down: logged at info), nor for late transfers (late_transfers).
  void on_failure(std::function<void(const std::string& peer, const std::string& reason)> handler);

  /// Sends `msg`, a registered tensor message (std::logic_error if not):
  /// over the data plane when its tensor is large, on the CPU and bound for
  /// a peer whose data plane is up; inline through CAF otherwise.
  /// Thread-safe; called from actor threads and device threads.
  template <class Msg>
  void send(const caf::actor& dest, Msg msg);

  /// Messages/bytes sent inline through CAF (every message send() did not
  /// route over the data plane, local ones included).
  transport_counters caf_counters() const;
  /// Messages/bytes sent through the data plane.
  transport_counters dataplane_counters() const;
  /// data_plane::counters(): wire bytes and frames per peer.
  std::map<std::string, transport::peer_counters> peer_counters() const;
  /// Transfers received of which one half still waits for the other.
  std::size_t unmatched_transfers() const;
  /// Fault injection: cuts the data-plane connection to `peer` (see
  /// data_plane::cut; empty: every peer). Like any lost connection it is
  /// reported, and rebuilt.
  void cut_peer(const std::string& peer);
  /// Transfers that arrived for a job that had ended here, or for an actor
  /// that no longer exists (a job's late messages after it was aborted):
  /// both halves dropped, never delivered and never paired with another.
  std::uint64_t late_transfers() const;

  /// The same courier, stamping `job` on every transfer it sends (the node
  /// agent gives each job actor such a view). Views share everything with
  /// the courier, and destroying one stops nothing.
  std::shared_ptr<courier> for_job(std::uint64_t job) const;
  /// Job `job` ended in this process: transfers of it that arrive from now
  /// on are dropped and counted (late_transfers). Remembers the last 1024
  /// ended jobs.
  void end_job(std::uint64_t job);

  /// Idempotent; fails nothing silently: pending data-plane sends fail through
  /// the failure handler, the io thread is joined, the actor exits. Later
  /// sends travel inline through CAF. Must not be called from the failure
  /// handler or a data-plane callback. A for_job view's stop() does nothing.
  void stop();

  class impl;

private:
  /// Where a transfer over the data plane goes: the peer's data-plane name
  /// and its courier actor (for a descriptor that cannot be encoded).
  struct data_route {
    std::string peer;
    caf::actor endpoint;
  };

  courier(std::shared_ptr<impl> p, std::uint64_t job, bool owner);
  const tensor_message_registry& messages() const;
  /// The data-plane route for `data` to `dest`, if it takes one; counts the
  /// message either way (caf_counters / dataplane_counters).
  std::optional<data_route> route_for(const caf::actor& dest, const tensor& data);
  /// Fills `d`'s header and sends it, then `payload`, over `r`. False when
  /// the descriptor did not encode: the payload went, `d` must follow
  /// through CAF to r.endpoint.
  bool ship(const tensor_message_type& type, const data_route& r, const caf::actor& dest,
            transfer_header& d, tensor payload);
  std::shared_ptr<impl> impl_;
  std::uint64_t job_ = 0; ///< stamped on what this handle sends
  bool owner_ = true;     ///< false for for_job views: they stop nothing
};

template <class Msg>
void courier::send(const caf::actor& dest, Msg msg) {
  const auto& type = messages().at<Msg>();
  tensor& data = type.payload(&msg);
  auto r = route_for(dest, data);
  if (!r) {
    caf::anon_send(dest, std::move(msg));
    return;
  }
  transfer_descriptor<Msg> d;
  auto payload = std::exchange(data, tensor{});
  d.msg = std::move(msg);
  if (!ship(type, *r, dest, d, std::move(payload)))
    caf::anon_send(r->endpoint, std::move(d));
}

/// `c` null means single-process: plain anon_send. Callers use this everywhere.
template <class Msg>
void deliver(const std::shared_ptr<courier>& c, const caf::actor& dest, Msg msg) {
  if (c)
    c->send(dest, std::move(msg));
  else
    caf::anon_send(dest, std::move(msg));
}

} // namespace troupe::runtime::transport
