#include "runtime/net/transport/tensor_message_registry.hpp"

#include <limits>
#include <stdexcept>

namespace troupe::runtime::transport {

void tensor_message_registry::append(tensor_message_type t) {
  for (const auto& known : types_)
    if (known.msg_type == t.msg_type || known.descriptor_name == t.descriptor_name)
      throw std::logic_error("tensor message '" + t.descriptor_name + "' registered twice");
  if (types_.size() >= std::numeric_limits<std::uint8_t>::max())
    throw std::logic_error("too many tensor message types");
  t.tag = static_cast<std::uint8_t>(types_.size() + 1);
  types_.push_back(std::move(t));
}

const tensor_message_type& tensor_message_registry::at(std::type_index msg_type) const {
  for (const auto& t : types_)
    if (t.msg_type == msg_type)
      return t;
  throw std::logic_error(std::string{"courier: message type "} + msg_type.name() +
                         " is not a registered tensor message");
}

const tensor_message_type* tensor_message_registry::by_tag(std::uint8_t tag) const {
  if (tag == 0 || tag > types_.size())
    return nullptr;
  return &types_[tag - 1];
}

caf::message_handler
tensor_message_registry::descriptor_handler(std::function<void(incoming_transfer&)> sink) const {
  caf::message_handler all;
  for (const auto& t : types_)
    all = all.or_else(t.handler(sink));
  return all;
}

} // namespace troupe::runtime::transport
