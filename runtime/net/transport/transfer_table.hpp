#pragma once

// Pairs the two halves of a data-plane transfer: the descriptor (through CAF,
// on an actor thread) and the payload (through the data plane, on its io
// thread). Either may come first; whichever completes a pair gets it back to
// deliver. Pure bookkeeping, no threads and no I/O, so every ordering is
// tested directly; the courier guards it with a mutex.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>

#include "runtime/dtype.hpp"
#include "runtime/tensor.hpp"

namespace troupe::runtime::transport {

class transfer_table {
public:
  /// Puts the payload back into its message and sends it on.
  using deliver_fn = std::function<void(tensor payload)>;

  /// What one call produced: a completed pair (deliver is set), an error to
  /// report, or neither (the half is held until its partner arrives).
  struct outcome {
    deliver_fn deliver;
    tensor payload;
    std::optional<std::string> error;
    /// The half came from a peer that is down (see drop_peer): discarded
    /// without an error, its loss was reported with the peer.
    bool discarded = false;
  };

  /// `max_unmatched_bytes` caps the payload bytes held per peer while their
  /// descriptors are still on the way.
  explicit transfer_table(std::uint64_t max_unmatched_bytes);

  /// The descriptor of transfer `id` from `peer`: the payload must have
  /// dtype `type` and shape `shape`.
  outcome add_descriptor(const std::string& peer, std::uint64_t id, dtype type, shape_t shape,
                         deliver_fn deliver);
  /// The payload of transfer `id` from `peer`.
  outcome add_payload(const std::string& peer, std::uint64_t id, tensor payload);

  /// Forgets every unmatched half from `peer` and discards what it sends
  /// later (a descriptor still in flight through CAF when its data-plane
  /// connection died would otherwise wait forever). Returns how many
  /// transfers were dropped.
  std::size_t drop_peer(const std::string& peer);
  /// `peer` is connected again: accept its transfers.
  void open_peer(const std::string& peer);
  /// Forgets everything; returns the number of unmatched transfers per peer.
  std::map<std::string, std::size_t> clear();

  /// Unmatched transfers (either half) in total and from one peer.
  std::size_t unmatched() const;
  std::size_t unmatched(const std::string& peer) const;
  /// Payload bytes held for `peer` while waiting for descriptors.
  std::uint64_t unmatched_bytes(const std::string& peer) const;

private:
  struct expectation {
    dtype type = dtype::f32;
    shape_t shape;
    deliver_fn deliver;
  };
  struct entry {
    std::optional<expectation> described;
    tensor payload; ///< defined when the payload came first
  };
  struct peer_entries {
    std::unordered_map<std::uint64_t, entry> entries;
    std::uint64_t payload_bytes = 0;
  };

  /// The pair is complete: checks the payload against its descriptor.
  static outcome match(const std::string& peer, std::uint64_t id, expectation e, tensor payload);

  std::uint64_t max_unmatched_bytes_;
  std::map<std::string, peer_entries> peers_;
  std::set<std::string> down_;
};

} // namespace troupe::runtime::transport
