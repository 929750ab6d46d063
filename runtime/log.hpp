#pragma once

#include <memory>
#include <string_view>

#include <spdlog/logger.h>

namespace troupe::runtime {

/// The named logger of one component ("trainer", "supervisor", "dataplane",
/// ...). All loggers write to stderr with the same pattern; the level comes
/// from set_log_level (the CLI's --log-level) or TROUPE_LOG_LEVEL.
std::shared_ptr<spdlog::logger> logger(std::string_view component);

/// Sets the level of every troupe logger ("trace", "debug", "info", "warn",
/// "error", "off"); returns false for an unknown level name.
bool set_log_level(std::string_view level);

} // namespace troupe::runtime
