#pragma once

// Which messages the courier may split into descriptor + payload, and how:
// each tensor message type is registered once (system_config.cpp) with its
// descriptor's wire name and where its tensor lives; the courier works only
// through the type-erased entries here, so a new tensor message needs no
// change in the transport.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <typeindex>
#include <typeinfo>
#include <utility>
#include <vector>

#include <caf/actor_system_config.hpp>
#include <caf/binary_deserializer.hpp>
#include <caf/binary_serializer.hpp>
#include <caf/error.hpp>
#include <caf/message_handler.hpp>
#include <caf/send.hpp>

#include "runtime/net/transport/transfer_descriptor.hpp"
#include "runtime/net/transport/transfer_table.hpp"
#include "runtime/tensor.hpp"

namespace troupe::runtime::transport {

/// A descriptor that arrived, with its message type erased: the header to
/// check and pair, and a function that puts the payload back into the
/// message and sends it to `head.dest`.
struct incoming_transfer {
  transfer_header head;
  transfer_table::deliver_fn deliver;
};

/// One registered tensor message type: what the courier calls to take its
/// tensor out, encode its descriptor and turn a received one back into a
/// message. Plain function pointers, instantiated by
/// tensor_message_registry::add.
struct tensor_message_type {
  std::type_index msg_type;
  std::string descriptor_name; ///< the descriptor's CAF type name (wire)
  std::uint8_t tag = 0;        ///< first byte of its descriptor frames (wire)
  /// The message's tensor (`msg` points to the registered type).
  tensor& (*payload)(void* msg);
  /// Appends a transfer_descriptor of this type (`d` is one) to `out`.
  caf::error (*encode)(caf::actor_system& sys, transfer_header& d, std::vector<char>& out);
  /// Decodes `n` bytes written by encode.
  caf::error (*decode)(caf::actor_system& sys, const char* bytes, std::size_t n,
                       incoming_transfer& out);
  /// A handler for this descriptor type arriving through CAF.
  caf::message_handler (*handler)(std::function<void(incoming_transfer&)> sink);
};

/// The tensor message types of one actor system, in registration order.
/// Built while configuring the system (system_config) and read-only after.
class tensor_message_registry {
public:
  /// Registers the message type that holds its tensor in `Payload` (a
  /// pointer to a `tensor` member, e.g. `&activation_msg::data`), and its
  /// transfer_descriptor with `cfg` under `descriptor_name`. The order of
  /// calls is wire protocol (the n-th type gets tag n): append only. Throws
  /// std::logic_error for a type or name registered twice.
  template <auto Payload>
  void add(caf::actor_system_config& cfg, std::string descriptor_name);

  /// The entry of `Msg`; throws std::logic_error when it is not registered.
  template <class Msg>
  const tensor_message_type& at() const {
    return at(typeid(Msg));
  }
  const tensor_message_type& at(std::type_index msg_type) const;
  /// The entry whose descriptor frames start with `tag`, or null.
  const tensor_message_type* by_tag(std::uint8_t tag) const;
  /// One handler for every registered descriptor type (the courier actor's
  /// behaviour), passing each to `sink`.
  caf::message_handler descriptor_handler(std::function<void(incoming_transfer&)> sink) const;

  std::size_t size() const { return types_.size(); }

private:
  template <class T>
  struct member_of;
  template <class Msg>
  struct member_of<tensor Msg::*> {
    using type = Msg;
  };

  template <auto Payload, class Msg>
  static incoming_transfer unpack(transfer_descriptor<Msg>&& d);
  /// Checks for duplicates and assigns the tag.
  void append(tensor_message_type t);

  std::vector<tensor_message_type> types_;
};

template <auto Payload, class Msg>
incoming_transfer tensor_message_registry::unpack(transfer_descriptor<Msg>&& d) {
  incoming_transfer t;
  t.deliver = [dest = d.dest, msg = std::move(d.msg)](tensor payload) mutable {
    msg.*Payload = std::move(payload);
    caf::anon_send(dest, std::move(msg));
  };
  t.head = std::move(static_cast<transfer_header&>(d));
  return t;
}

template <auto Payload>
void tensor_message_registry::add(caf::actor_system_config& cfg, std::string descriptor_name) {
  using Msg = typename member_of<decltype(Payload)>::type;
  using descriptor = transfer_descriptor<Msg>;
  append(tensor_message_type{
      typeid(Msg),
      descriptor_name,
      0,
      [](void* msg) -> tensor& { return static_cast<Msg*>(msg)->*Payload; },
      [](caf::actor_system& sys, transfer_header& d, std::vector<char>& out) {
        caf::binary_serializer sink{sys, out};
        return sink(static_cast<descriptor&>(d));
      },
      [](caf::actor_system& sys, const char* bytes, std::size_t n, incoming_transfer& out) {
        descriptor d;
        caf::binary_deserializer source{sys, bytes, n};
        if (auto err = source(d))
          return err;
        out = unpack<Payload>(std::move(d));
        return caf::error{};
      },
      [](std::function<void(incoming_transfer&)> sink) {
        return caf::message_handler{[sink = std::move(sink)](descriptor& d) {
          auto t = unpack<Payload>(std::move(d));
          sink(t);
        }};
      },
  });
  // After append's duplicate check: a refused type leaves CAF's config untouched.
  cfg.add_message_type<descriptor>(std::move(descriptor_name));
}

} // namespace troupe::runtime::transport
