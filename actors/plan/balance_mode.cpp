#include "actors/plan/balance_mode.hpp"

#include <string>

#include "runtime/error.hpp"

namespace troupe::actors {

std::string_view to_string(balance_mode m) {
  return m == balance_mode::automatic ? "auto" : "off";
}

std::optional<balance_mode> try_parse_balance_mode(std::string_view s) {
  for (auto m : {balance_mode::off, balance_mode::automatic})
    if (s == to_string(m))
      return m;
  return std::nullopt;
}

balance_mode parse_balance_mode(std::string_view s) {
  if (auto m = try_parse_balance_mode(s))
    return *m;
  throw runtime::input_error("--balance must be auto or off, got '" + std::string{s} + "'");
}

} // namespace troupe::actors
