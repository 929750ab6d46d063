#include "actors/pipeline/ps_worker.hpp"

#include <stdexcept>
#include <string>
#include <utility>

namespace troupe::actors {

using steady_clock = std::chrono::steady_clock;

void ps_worker::begin_step() {
  pushed = false;
  step_samples = 0;
}

void ps_worker::wire(const shard_config& cfg, std::vector<caf::actor> shards, caf::actor self) {
  wired = true;
  try {
    client = ps_client{cfg.stage,         cfg.replica, cfg.ps_layout,
                       std::move(shards), cfg.courier, std::move(self)};
  } catch (const std::exception& e) {
    throw std::runtime_error(std::string{"parameter servers: "} + e.what());
  }
}

bool ps_worker::push(compute_state& c, const actors::step_msg& m, ps_mode mode,
                     runtime::trace_recorder& trace) {
  pushed = true;
  pushed_at = steady_clock::now();
  if (!wired)
    throw std::runtime_error("training step " + std::to_string(m.step) +
                             " before its parameter servers were given");
  if (!client.active()) // a stage without parameters
    return true;
  float scale = 1.0f;
  if (mode != ps_mode::sync && step_samples > 0)
    scale = static_cast<float>(m.global_batch) / static_cast<float>(step_samples);
  auto params = c.parameters();
  bytes_mark = client.bytes_pushed() + client.bytes_pulled();
  try {
    client.push(m.step, params, m.lr, scale);
    client.request(m.step + 1);
  } catch (const std::exception& e) {
    throw std::runtime_error(std::string{"pushing to the parameter servers: "} + e.what());
  }
  trace.instant("ps push", "comm", pushed_at, {{"step", m.step}});
  return false;
}

bool ps_worker::receive(actors::ps_msg&& m) {
  try {
    return client.on_params(std::move(m));
  } catch (const std::exception& e) {
    throw std::runtime_error(std::string{"pulled parameters: "} + e.what());
  }
}

std::optional<std::uint64_t> ps_worker::apply(compute_state& c, const actors::step_msg& m,
                                              actors::stage_report& report,
                                              runtime::trace_recorder& trace) {
  auto params = c.parameters();
  try {
    client.apply(params);
  } catch (const std::exception& e) {
    throw std::runtime_error(std::string{"pulled parameters: "} + e.what());
  }
  for (auto& chunk : c.chunks)
    chunk.zero_grad();
  auto digest = after_update(c, m.step);
  const auto now = steady_clock::now();
  report.ps_bytes += client.bytes_pushed() + client.bytes_pulled() - bytes_mark;
  report.ps_seconds += std::chrono::duration<double>(now - pushed_at).count();
  trace.complete("ps push+pull", "comm", pushed_at, now, {{"step", m.step}});
  return digest;
}

} // namespace troupe::actors
