#include "actors/pipeline/device_actor.hpp"

#include <pthread.h>
#include <sched.h>

#include <optional>
#include <vector>

#include <caf/event_based_actor.hpp>
#include <caf/spawn_options.hpp>

#include "actors/protocol/messages.hpp"
#include "kernels/cpu/gemm.hpp"
#include "kernels/cpu/gemm_backend.hpp"
#include "runtime/error.hpp"
#include "runtime/log.hpp"

namespace troupe::actors {

nlohmann::json to_json(const device_config& c) {
  return {{"name", c.name},
          {"device", runtime::to_string(c.where)},
          {"threads", c.threads},
          {"gemm", kernels::cpu::to_string(c.gemm)}};
}

device_config device_config_from_json(const nlohmann::json& j) {
  try {
    device_config c;
    c.name = j.at("name").get<std::string>();
    auto where = runtime::parse_device(j.at("device").get<std::string>());
    if (!where || where->kind() != runtime::device_kind::cpu)
      throw runtime::input_error("device config: device '" + j.at("device").get<std::string>() +
                                 "' is not a CPU device");
    c.where = *where;
    c.threads = j.at("threads").get<int>();
    if (c.threads < 1 || c.threads > 1024)
      throw runtime::input_error("device config: threads " + std::to_string(c.threads) +
                                 " outside 1..1024");
    c.gemm = kernels::cpu::parse_gemm_backend(j.value("gemm", std::string{"auto"}));
    return c;
  } catch (const nlohmann::json::exception& e) {
    throw runtime::input_error(std::string{"device config: "} + e.what());
  }
}

namespace {

/// Pins the calling thread to `cores` when this process may run on all of
/// them (a replica on a core of its own: no migrations, no sharing a core
/// with another replica). Returns whether it did.
bool pin_this_thread(const std::vector<int>& cores) {
  cpu_set_t allowed;
  if (cores.empty() || sched_getaffinity(0, sizeof(allowed), &allowed) != 0)
    return false;
  cpu_set_t set;
  CPU_ZERO(&set);
  for (int k : cores) {
    if (k < 0 || k >= CPU_SETSIZE || !CPU_ISSET(k, &allowed))
      return false;
    CPU_SET(k, &set);
  }
  return pthread_setaffinity_np(pthread_self(), sizeof(set), &set) == 0;
}

caf::behavior device_actor(caf::event_based_actor* self, device_config cfg,
                           std::vector<int> cores) {
  // The init body runs on the detached actor's own thread: pin it and BLAS
  // here (OpenMP threads it starts inherit the cores).
  const bool pinned = pin_this_thread(cores);
  kernels::cpu::set_blas_threads_for_this_thread(cfg.threads);
  kernels::cpu::set_gemm_backend_for_this_thread(cfg.gemm);
  auto gflops = std::make_shared<std::optional<double>>();
  runtime::logger("device")->debug("{} up with {} BLAS thread(s){}", cfg.name, cfg.threads,
                                   pinned ? ", pinned" : "");
  return {
      [](device_task& task) { task.run(); },
      [gflops](actors::measure_atom) -> double {
        if (!*gflops)
          *gflops = kernels::cpu::measure_gemm_gflops(256, 1024, 1024, 3);
        return **gflops;
      },
  };
  (void)self;
}

} // namespace

std::vector<int> device_cores_from_json(const nlohmann::json& j) {
  try {
    return j.value("cores", std::vector<int>{});
  } catch (const nlohmann::json::exception& e) {
    throw runtime::input_error(std::string{"device config: cores: "} + e.what());
  }
}

caf::actor spawn_device(caf::actor_system& sys, device_config cfg, std::vector<int> cores) {
  return sys.spawn<caf::detached>(device_actor, std::move(cfg), std::move(cores));
}

} // namespace troupe::actors
