#include "runtime/log.hpp"

#include <atomic>
#include <cstdlib>
#include <mutex>
#include <string>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

namespace troupe::runtime {

namespace {

spdlog::level::level_enum initial_level() {
  if (const char* env = std::getenv("TROUPE_LOG_LEVEL")) {
    auto lvl = spdlog::level::from_str(env);
    // from_str maps unknown names to off; accept only real names.
    if (lvl != spdlog::level::off || std::string_view{env} == "off")
      return lvl;
  }
  return spdlog::level::info;
}

/// The level new loggers start with: TROUPE_LOG_LEVEL, then whatever
/// set_log_level chose (the CLI's --log-level), so loggers created after the
/// flag was parsed honour it too.
std::atomic<spdlog::level::level_enum>& current_level() {
  static std::atomic<spdlog::level::level_enum> level{initial_level()};
  return level;
}

} // namespace

std::shared_ptr<spdlog::logger> logger(std::string_view component) {
  static std::mutex mtx;
  std::lock_guard<std::mutex> guard{mtx};
  std::string name{component};
  if (auto existing = spdlog::get(name))
    return existing;
  // One stderr sink shared by every component keeps lines from interleaving.
  static auto sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  auto result = std::make_shared<spdlog::logger>(name, sink);
  result->set_pattern("[%H:%M:%S.%e] [%n] [%^%l%$] %v");
  result->set_level(current_level().load());
  spdlog::register_logger(result);
  return result;
}

bool set_log_level(std::string_view level) {
  auto lvl = spdlog::level::from_str(std::string{level});
  if (lvl == spdlog::level::off && level != "off")
    return false;
  current_level().store(lvl);
  spdlog::set_level(lvl);
  spdlog::apply_all([lvl](const std::shared_ptr<spdlog::logger>& l) { l->set_level(lvl); });
  return true;
}

} // namespace troupe::runtime
