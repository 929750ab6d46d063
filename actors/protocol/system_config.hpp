#pragma once

// The training protocol's registration: every message type of
// actors/protocol/messages.hpp under its fixed wire name, the tensor messages
// the courier may split, and the hash nodes compare at join time. Change it
// (append only) when a message type is added.

#include <cstdint>

#include <caf/actor_system_config.hpp>

#include "runtime/net/system_config.hpp"
#include "runtime/net/transport/tensor_message_registry.hpp"

namespace troupe::actors {

/// Registers every message type of the training protocol under fixed names,
/// and the tensor messages the courier may split in `registry`. Call exactly
/// once per config.
void register_protocol(caf::actor_system_config& cfg,
                       runtime::transport::tensor_message_registry& registry);

/// A hash of the registered type names, in registration order, their
/// layouts and the protocol version: nodes compare it at join time so that
/// mismatched builds are refused instead of exchanging empty messages.
std::uint64_t message_types_hash();

inline constexpr std::uint32_t protocol_version = 1;

/// The actor system configuration every troupe process uses: the runtime's
/// (scheduler, options) and the training protocol's message types.
class system_config : public runtime::system_config {
public:
  /// `scheduler_threads` 0 means one per core.
  explicit system_config(unsigned scheduler_threads = 0);
};

} // namespace troupe::actors
