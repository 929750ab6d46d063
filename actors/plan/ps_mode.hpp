#pragma once

// How parameter servers apply the workers' gradients. Parsed once where text
// comes in (CLI flags, plan and option JSON); everything else holds the enum.

#include <optional>
#include <string_view>

namespace troupe::actors {

/// sync: one update per step from all workers' summed gradients (BSP).
/// async: one update per push, nobody waits for anyone (Hogwild-style).
/// ssp: async, but no worker runs more than K steps ahead of the slowest
/// (stale synchronous parallel).
enum class ps_mode { sync, async, ssp };

/// "sync", "async" or "ssp": the form of flags, JSON and reports.
std::string_view to_string(ps_mode m);

/// The mode `s` names, or nothing.
std::optional<ps_mode> try_parse_ps_mode(std::string_view s);

/// The mode `s` names; throws runtime::input_error naming the value otherwise.
ps_mode parse_ps_mode(std::string_view s);

} // namespace troupe::actors
