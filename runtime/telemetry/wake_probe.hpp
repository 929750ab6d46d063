#pragma once

// What one thread wake-up costs on this machine, measured next to the
// benchmarks whose overheads are made of them (pipeline hand-offs, the data
// plane's small messages, the steps of data parallelism): a thread that
// sleeps in a futex until another wakes it, on another core and on the same
// core. On the 2-core VMs we measure on, a wake-up on the other core costs
// 18-35 us (its vCPU has halted and must be woken) and one on the same core
// 3-4 us, which is the floor a parked-thread hand-off cannot go below.

#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace troupe::runtime {

/// Median one-way wake-up latency in microseconds: half the round trip of
/// a futex ping-pong between two threads (std::atomic wait/notify), each
/// round after a pause long enough for the waiting core to go idle.
struct wake_latency {
  /// Two threads pinned to two different cores; nullopt when this process
  /// may run on one core only (or pinning is refused).
  std::optional<double> other_core_us;
  /// Both threads pinned to one core; nullopt when pinning is refused.
  std::optional<double> same_core_us;
  int rounds = 0; ///< ping-pongs per measurement
};

/// Measures both with `rounds` ping-pongs each (the probe takes about
/// rounds x 0.25 ms per measurement). Throws std::invalid_argument for
/// rounds < 1.
wake_latency measure_wake_latency(int rounds = 400);

/// "thread wake-up (futex, median of 400): other core 21.3 us, same core
/// 3.4 us" (n/a for a measurement that could not run).
std::string to_text(const wake_latency& w);

/// {"other_core_us", "same_core_us" (null when n/a), "rounds"}.
nlohmann::json to_json(const wake_latency& w);

} // namespace troupe::runtime
