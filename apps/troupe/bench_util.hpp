#pragma once

// Small pieces every `troupe bench` subcommand prints or writes.

#include <string>

#include <nlohmann/json.hpp>

namespace troupe::apps {

/// "1-min 5-min 15-min" from /proc/loadavg ("?" if unreadable): printed next
/// to every timing, since a busy machine changes them.
std::string load_average();

/// Writes `doc` indented to `file`, atomically (a reader never sees half).
void write_json_file(const std::string& file, const nlohmann::json& doc);

} // namespace troupe::apps
