#include "actors/pipeline/shard_trace.hpp"

#include <optional>
#include <utility>

#include "runtime/copy_meter.hpp"

namespace troupe::actors {

using steady_clock = std::chrono::steady_clock;
using time_point = steady_clock::time_point;

void shard_trace::input(const char* what, std::int64_t step, std::int32_t mb, std::int32_t chunk) {
  if (!enabled())
    return;
  last_input_at = steady_clock::now();
  last_input = what;
  last_input_mb = mb;
  recorder.instant(what, "input", last_input_at, {{"step", step}, {"mb", mb}, {"chunk", chunk}});
}

void shard_trace::step_begin() {
  if (enabled())
    step_began = steady_clock::now();
}

void shard_trace::idle(bool waiting, std::optional<time_point> since) {
  if (enabled() && waiting)
    idle_since = since ? *since : steady_clock::now();
}

void shard_trace::wait_end(std::int64_t step) {
  if (!idle_since)
    return;
  recorder.complete("wait", "wait", *idle_since, last_input_at,
                    {{"step", step}, {"input", last_input}, {"mb", last_input_mb}});
  idle_since.reset();
}

void shard_trace::step_end(const actors::step_msg& m) {
  recorder.complete_until_now("step", m.training ? "step" : "eval", step_began,
                              {{"step", m.step}, {"microbatches", m.microbatches}});
}

void handoff_stamp::done(runtime::trace_recorder& device_trace) const {
  if (sent != time_point{})
    device_trace.complete_until_now("device task", "handoff", sent, {{"step", step}});
}

handoff_stamp shard_trace::handoff_begins(const actors::step_msg& m) const {
  if (!enabled())
    return {};
  return {steady_clock::now(), m.step};
}

void shard_trace::task_done(time_point sent_at, std::int64_t step) {
  if (sent_at != time_point{})
    recorder.complete_until_now("task done", "handoff", sent_at, {{"step", step}});
}

device_work traced_update(std::shared_ptr<compute_state> c, device_work work, const char* name,
                          const actors::step_msg& m) {
  if (!c->trace.enabled())
    return work;
  const char* category = m.training ? "compute" : "eval";
  return [c = std::move(c), work = std::move(work), name, category, step = m.step]() {
    runtime::copy_meter copies;
    std::optional<runtime::copy_meter_scope> metered{std::in_place, &copies};
    auto t0 = steady_clock::now();
    auto d = work();
    auto t1 = steady_clock::now();
    metered.reset();
    c->trace.complete(name, category, t0, t1, {{"step", step}, {"copy_ns", copies.ns}});
    return d;
  };
}

} // namespace troupe::actors
