#pragma once

#include <cstdint>
#include <string>

#include <caf/actor_system_config.hpp>

namespace troupe::runtime {

/// Registers every message type of the training protocol (runtime/net/messages.hpp
/// and the actors' own) under fixed names. Call exactly once per config.
void register_message_types(caf::actor_system_config& cfg);

/// A hash of the registered type names, in registration order, and the
/// protocol version: nodes compare it at join time so that mismatched builds
/// are refused instead of exchanging empty messages.
std::uint64_t message_types_hash();

inline constexpr std::uint32_t protocol_version = 1;

/// The actor system configuration every troupe process uses: message types,
/// scheduler threads sized to the cores, and troupe's own options.
class system_config : public caf::actor_system_config {
public:
  /// `scheduler_threads` 0 means one per core.
  explicit system_config(unsigned scheduler_threads = 0);
};

} // namespace troupe::runtime
