#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>

#include "runtime/net/transport/tensor_message_registry.hpp"

namespace troupe::runtime {

/// Registers every message type of the training protocol (runtime/net/messages.hpp
/// and the actors' own) under fixed names, and the tensor messages the courier
/// may split in `registry`. Call exactly once per config.
void register_message_types(caf::actor_system_config& cfg,
                            transport::tensor_message_registry& registry);

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

  /// Registers one more tensor message after troupe's own (see
  /// tensor_message_registry::add; also register Msg itself with
  /// add_message_type): for a derived config's constructor, before an actor
  /// system uses this config. Not part of message_types_hash.
  template <auto Payload>
  void add_tensor_message(std::string descriptor_name) {
    tensor_messages_->add<Payload>(*this, std::move(descriptor_name));
  }

  /// The tensor messages registered in this config; shared with couriers.
  std::shared_ptr<const transport::tensor_message_registry> tensor_messages() const {
    return tensor_messages_;
  }

private:
  std::shared_ptr<transport::tensor_message_registry> tensor_messages_;
};

/// The tensor messages of `sys`; throws std::invalid_argument when `sys` was
/// not configured by a system_config.
std::shared_ptr<const transport::tensor_message_registry>
tensor_messages(const caf::actor_system& sys);

} // namespace troupe::runtime
