#pragma once

// Whether a job is balanced over unlike devices by measured speed. Parsed
// once where text comes in (CLI flags, option JSON); everything else holds
// the enum.

#include <optional>
#include <string_view>

namespace troupe::actors {

/// automatic: on a cluster the nodes measure the job's own layers on their
/// devices before it is planned; batch shares and stage boundaries follow
/// the measured speeds, and the trainer rebalances while the job runs when a
/// replica or stage stays slower than predicted (actors/plan/balance.hpp).
/// off: equal shares and the --partition split, as given.
enum class balance_mode { off, automatic };

/// "off" or "auto": the form of flags, JSON and reports.
std::string_view to_string(balance_mode m);

/// The mode `s` names, or nothing.
std::optional<balance_mode> try_parse_balance_mode(std::string_view s);

/// The mode `s` names; throws runtime::input_error naming the value otherwise.
balance_mode parse_balance_mode(std::string_view s);

} // namespace troupe::actors
