#include "actors/collectives/collective_failure.hpp"

#include <caf/atom.hpp>
#include <caf/sec.hpp>

namespace troupe::actors {

caf::error peer_death_error(const caf::actor_system& sys, const std::string& label, int who,
                            const caf::error& reason, std::size_t pending) {
  // A peer that quit because another rank died carries (text, dead rank,
  // cause): name the rank that died first, not the messenger.
  int dead = who;
  std::string cause = sys.render(reason);
  std::string via;
  const auto& ctx = reason.context();
  if (reason.category() == caf::atom("system") &&
      ctx.match_elements<std::string, std::int32_t, std::string>()) {
    dead = ctx.get_as<std::int32_t>(1);
    cause = ctx.get_as<std::string>(2);
    via = ", reported by rank " + std::to_string(who);
  }
  return caf::make_error(caf::sec::runtime_error,
                         label + ": peer rank " + std::to_string(dead) + " died (" + cause + ")" +
                             via + "; " + std::to_string(pending) + " pending collective(s) failed",
                         static_cast<std::int32_t>(dead), cause);
}

} // namespace troupe::actors
