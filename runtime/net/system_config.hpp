#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>

#include "runtime/net/transport/tensor_message_registry.hpp"

namespace troupe::runtime {

/// The runtime's part of every troupe process's actor system configuration:
/// scheduler threads sized to the cores, troupe's own options and the
/// registry of tensor messages the courier may split. The message types come
/// from the layer that defines them (actors::system_config registers the
/// training protocol's).
class system_config : public caf::actor_system_config {
public:
  /// `scheduler_threads` 0 means one per core.
  explicit system_config(unsigned scheduler_threads = 0);

  /// Registers a tensor message (see tensor_message_registry::add; also
  /// register Msg itself with add_message_type): for a derived config's
  /// constructor, before an actor system uses this config. The order of
  /// these calls is wire protocol (descriptor-frame tags).
  template <auto Payload>
  void add_tensor_message(std::string descriptor_name) {
    tensor_messages_->add<Payload>(*this, std::move(descriptor_name));
  }

  /// The tensor messages registered in this config; shared with couriers.
  std::shared_ptr<const transport::tensor_message_registry> tensor_messages() const {
    return tensor_messages_;
  }

protected:
  /// For a derived config's constructor, registering its protocol.
  transport::tensor_message_registry& tensor_message_registry_mut() { return *tensor_messages_; }

private:
  std::shared_ptr<transport::tensor_message_registry> tensor_messages_;
};

/// The tensor messages of `sys`; throws std::invalid_argument when `sys` was
/// not configured by a system_config.
std::shared_ptr<const transport::tensor_message_registry>
tensor_messages(const caf::actor_system& sys);

} // namespace troupe::runtime
