#include "actors/plan/ps_mode.hpp"

#include <string>

#include "runtime/error.hpp"

namespace troupe::actors {

std::string_view to_string(ps_mode m) {
  switch (m) {
  case ps_mode::sync:
    return "sync";
  case ps_mode::async:
    return "async";
  case ps_mode::ssp:
    return "ssp";
  }
  return "unknown";
}

std::optional<ps_mode> try_parse_ps_mode(std::string_view s) {
  for (auto m : {ps_mode::sync, ps_mode::async, ps_mode::ssp})
    if (s == to_string(m))
      return m;
  return std::nullopt;
}

ps_mode parse_ps_mode(std::string_view s) {
  if (auto m = try_parse_ps_mode(s))
    return *m;
  throw runtime::input_error("ps mode must be sync, async or ssp, got '" + std::string{s} + "'");
}

} // namespace troupe::actors
