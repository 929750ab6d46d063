#include "runtime/telemetry/wake_probe.hpp"

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <stdexcept>
#include <thread>
#include <vector>

namespace troupe::runtime {

namespace {

using clock_type = std::chrono::steady_clock;

/// The cores this process may run on.
std::vector<int> allowed_cores() {
  cpu_set_t set;
  std::vector<int> cores;
  if (sched_getaffinity(0, sizeof set, &set) != 0)
    return cores;
  for (int c = 0; c < CPU_SETSIZE; ++c)
    if (CPU_ISSET(c, &set))
      cores.push_back(c);
  return cores;
}

bool pin_to(int core) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(core, &set);
  return pthread_setaffinity_np(pthread_self(), sizeof set, &set) == 0;
}

/// Sleeps in the futex until `turn` holds `want`.
void wait_for(std::atomic<int>& turn, int want) {
  for (int v = turn.load(); v != want; v = turn.load())
    turn.wait(v);
}

/// One ping-pong measurement between a thread on `ping_core` and one on
/// `pong_core`: the median of half the round trips, or nullopt when a
/// thread could not be pinned. Runs on its own threads, so the caller's
/// affinity is left as it was.
std::optional<double> ping_pong(int ping_core, int pong_core, int rounds) {
  std::atomic<int> turn{0};
  std::atomic<bool> pinned{true};
  std::vector<double> half_trips;
  half_trips.reserve(static_cast<std::size_t>(rounds));
  std::thread pong([&] {
    if (!pin_to(pong_core))
      pinned = false;
    for (int i = 0; i < rounds; ++i) {
      wait_for(turn, 2 * i + 1);
      turn.store(2 * i + 2);
      turn.notify_one();
    }
  });
  std::thread ping([&] {
    if (!pin_to(ping_core))
      pinned = false;
    for (int i = 0; i < rounds; ++i) {
      // A pause like a device's kernel: the waiting side's core goes idle,
      // as it does between two hand-offs of a real run.
      std::this_thread::sleep_for(std::chrono::microseconds(200));
      const auto t0 = clock_type::now();
      turn.store(2 * i + 1);
      turn.notify_one();
      wait_for(turn, 2 * i + 2);
      half_trips.push_back(
          std::chrono::duration<double, std::micro>(clock_type::now() - t0).count() / 2);
    }
  });
  ping.join();
  pong.join();
  if (!pinned || half_trips.empty())
    return std::nullopt;
  auto mid = half_trips.begin() + static_cast<std::ptrdiff_t>(half_trips.size() / 2);
  std::nth_element(half_trips.begin(), mid, half_trips.end());
  return *mid;
}

std::string us_or_na(const std::optional<double>& us) {
  if (!us)
    return "n/a";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f us", *us);
  return buf;
}

} // namespace

wake_latency measure_wake_latency(int rounds) {
  if (rounds < 1)
    throw std::invalid_argument("measure_wake_latency: " + std::to_string(rounds) + " rounds");
  wake_latency w;
  w.rounds = rounds;
  const auto cores = allowed_cores();
  if (cores.empty())
    return w;
  w.same_core_us = ping_pong(cores[0], cores[0], rounds);
  if (cores.size() > 1)
    w.other_core_us = ping_pong(cores[0], cores[1], rounds);
  return w;
}

std::string to_text(const wake_latency& w) {
  return "thread wake-up (futex, median of " + std::to_string(w.rounds) + "): other core " +
         us_or_na(w.other_core_us) + ", same core " + us_or_na(w.same_core_us);
}

nlohmann::json to_json(const wake_latency& w) {
  auto value = [](const std::optional<double>& us) {
    return us ? nlohmann::json(*us) : nlohmann::json();
  };
  return {{"other_core_us", value(w.other_core_us)},
          {"same_core_us", value(w.same_core_us)},
          {"rounds", w.rounds}};
}

} // namespace troupe::runtime
