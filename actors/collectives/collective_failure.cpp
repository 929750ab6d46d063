#include "actors/collectives/collective_failure.hpp"

#include <caf/atom.hpp>
#include <caf/exit_reason.hpp>
#include <caf/sec.hpp>

namespace troupe::actors {

std::string op_text(std::int64_t op, const std::string& what) {
  return "op " + std::to_string(op) + ": " + what;
}

caf::error rank_failure(const std::string& text, int rank) {
  return caf::make_error(caf::sec::runtime_error, text, static_cast<std::int32_t>(rank), text);
}

int rank_index(const std::vector<caf::actor>& ranks, const caf::actor_addr& source) {
  for (std::size_t i = 0; i < ranks.size(); ++i)
    if (ranks[i].address() == source)
      return static_cast<int>(i);
  return -1;
}

bool orderly_exit(const caf::error& reason) {
  return reason == caf::exit_reason::normal || reason == caf::exit_reason::user_shutdown;
}

caf::error peer_death_error(const caf::actor_system& sys, const std::string& label, int who,
                            const caf::error& reason, std::size_t pending) {
  // A peer that quit because another rank died carries (text, dead rank,
  // cause): name the rank that died first, not the messenger.
  int dead = who;
  std::string cause = sys.render(reason);
  std::string via;
  // (A normal exit is CAF 0.17's empty error, which has no context.)
  if (reason && reason.category() == caf::atom("system") &&
      reason.context().match_elements<std::string, std::int32_t, std::string>()) {
    dead = reason.context().get_as<std::int32_t>(1);
    cause = reason.context().get_as<std::string>(2);
    via = ", reported by rank " + std::to_string(who);
  }
  return caf::make_error(caf::sec::runtime_error,
                         label + ": peer rank " + std::to_string(dead) + " died (" + cause + ")" +
                             via + "; " + std::to_string(pending) + " pending collective(s) failed",
                         static_cast<std::int32_t>(dead), cause);
}

} // namespace troupe::actors
