#include "actors/protocol/system_config.hpp"

#include <array>
#include <stdexcept>
#include <string_view>
#include <vector>

#include <caf/binary_serializer.hpp>

#include "actors/protocol/messages.hpp"
#include "runtime/rng.hpp"

namespace troupe::actors {

namespace {

// Registration order and names are part of the wire protocol: append only.
constexpr std::array<std::string_view, 17> type_names = {
    "troupe::tensor",
    "troupe::activation_msg",
    "troupe::gradient_msg",
    "troupe::labels_msg",
    "troupe::step_msg",
    "troupe::stage_report",
    "troupe::named_tensors",
    "troupe::batch_msg",
    "troupe::collective_msg",
    "troupe::collective_stats",
    "troupe::activation_descriptor",
    "troupe::gradient_descriptor",
    "troupe::collective_descriptor",
    "troupe::ps_msg",
    "troupe::ps_stats",
    "troupe::ps_descriptor",
    "troupe::weights", // std::vector<double>: a loader's replica shares (reshare_atom)
};

} // namespace

void register_protocol(caf::actor_system_config& cfg,
                       runtime::transport::tensor_message_registry& registry) {
  auto name = [](std::size_t i) { return std::string{type_names[i]}; };
  cfg.add_message_type<runtime::tensor>(name(0));
  cfg.add_message_type<activation_msg>(name(1));
  cfg.add_message_type<gradient_msg>(name(2));
  cfg.add_message_type<labels_msg>(name(3));
  cfg.add_message_type<step_msg>(name(4));
  cfg.add_message_type<stage_report>(name(5));
  cfg.add_message_type<runtime::named_tensors>(name(6));
  cfg.add_message_type<batch_msg>(name(7));
  cfg.add_message_type<collective_msg>(name(8));
  cfg.add_message_type<collective_stats>(name(9));
  // Tensor messages, in the order of their descriptor-frame tags (1, 2, ...):
  // wire protocol, append only.
  registry.add<&activation_msg::data>(cfg, name(10));
  registry.add<&gradient_msg::data>(cfg, name(11));
  registry.add<&collective_msg::data>(cfg, name(12));
  cfg.add_message_type<ps_msg>(name(13));
  cfg.add_message_type<ps_stats>(name(14));
  registry.add<&ps_msg::data>(cfg, name(15));
  cfg.add_message_type<std::vector<double>>(name(16));
}

namespace {

/// The bytes of a default-constructed T as CAF serialises it: a field added,
/// removed or retyped changes them (same-size fields swapped do not).
template <class T>
std::uint64_t layout_hash() {
  std::vector<char> buf;
  caf::binary_serializer sink{nullptr, buf};
  T x{};
  if (auto err = sink(x))
    throw std::logic_error("cannot serialise a default message value");
  std::uint64_t h = runtime::mix64(buf.size());
  for (char c : buf)
    h = runtime::mix64(h ^ static_cast<unsigned char>(c));
  return h;
}

} // namespace

std::uint64_t message_types_hash() {
  // Names and layouts, in registration order, and the protocol version. The
  // transfer descriptors hold an actor handle, which needs an actor system to
  // serialise; their payload messages are covered above.
  static const std::uint64_t value = [] {
    std::uint64_t h = runtime::mix64(protocol_version);
    for (auto name : type_names)
      h = runtime::mix64(h ^ runtime::hash_name(name));
    for (auto layout :
         {layout_hash<runtime::tensor>(), layout_hash<activation_msg>(),
          layout_hash<gradient_msg>(), layout_hash<labels_msg>(), layout_hash<step_msg>(),
          layout_hash<stage_report>(), layout_hash<runtime::named_tensors>(),
          layout_hash<batch_msg>(), layout_hash<collective_msg>(), layout_hash<collective_stats>(),
          layout_hash<ps_msg>(), layout_hash<ps_stats>()})
      h = runtime::mix64(h ^ layout);
    return h;
  }();
  return value;
}

system_config::system_config(unsigned scheduler_threads)
    : runtime::system_config(scheduler_threads) {
  register_protocol(*this, tensor_message_registry_mut());
}

} // namespace troupe::actors
