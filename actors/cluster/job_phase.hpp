#pragma once

// Where the supervisor's one job is in its life: change it with the
// supervisor's job handling (supervisor.cpp).

#include <cstdint>
#include <string_view>

namespace troupe::actors {

enum class job_phase : std::uint8_t {
  idle,       ///< no job
  waiting,    ///< accepted, waiting for enough nodes
  reading,    ///< the nodes read and check the job's data (--data-from nodes)
  measuring,  ///< the nodes measure the job's layers on their devices (--balance auto)
  starting,   ///< planned; its actors are being spawned and wired
  running,    ///< the trainer runs
  recovering, ///< a generation ended by a failure; the next is being placed (recovery.hpp)
};

/// The name /status shows.
constexpr std::string_view to_string(job_phase p) {
  switch (p) {
  case job_phase::idle:
    return "idle";
  case job_phase::waiting:
    return "waiting";
  case job_phase::reading:
    return "reading data";
  case job_phase::measuring:
    return "measuring";
  case job_phase::starting:
    return "starting";
  case job_phase::running:
    return "running";
  case job_phase::recovering:
    return "recovering";
  }
  return "?";
}

} // namespace troupe::actors
