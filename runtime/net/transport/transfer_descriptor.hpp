#pragma once

// The CAF half of a tensor message that travels in two halves (courier.hpp):
// its wire layout. Change it only with the protocol (system_config.cpp).

#include <cstdint>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/meta/type_name.hpp>

namespace troupe::runtime::transport {

/// What a descriptor says about its transfer, whatever the message: the
/// transfer id and sender that pair it with its payload, the job it belongs
/// to, the destination, and the payload's dtype and shape to check it against.
struct transfer_header {
  std::uint64_t transfer_id = 0;
  std::string sender;              ///< the sending courier's data-plane name
  std::uint64_t job = 0;           ///< the sender's job (0: none); see courier::end_job
  caf::actor dest;                 ///< lives in the receiving process
  std::uint8_t type = 0;           ///< the payload's dtype (wire code)
  std::vector<std::int64_t> shape; ///< the payload's shape
};

/// The header and the original message with its tensor undefined.
template <class Msg>
struct transfer_descriptor : transfer_header {
  Msg msg;
};

template <class Inspector, class Msg>
typename Inspector::result_type inspect(Inspector& f, transfer_descriptor<Msg>& x) {
  return f(caf::meta::type_name("transfer_descriptor"), x.transfer_id, x.sender, x.job, x.dest,
           x.type, x.shape, x.msg);
}

} // namespace troupe::runtime::transport
