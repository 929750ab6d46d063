#pragma once

#include <string>

#include <caf/actor_system.hpp>
#include <caf/error.hpp>
#include <caf/message.hpp>

namespace troupe::runtime {

/// The human-readable text of an error: the message troupe put into it when
/// there is one (caf::make_error(code, "what went wrong")), CAF's rendering
/// otherwise.
inline std::string describe(const caf::actor_system& sys, const caf::error& err) {
  const auto& ctx = err.context();
  if (ctx.size() == 1 && ctx.match_element<std::string>(0))
    return ctx.get_as<std::string>(0);
  return sys.render(err);
}

} // namespace troupe::runtime
