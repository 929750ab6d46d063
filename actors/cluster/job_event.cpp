#include "actors/cluster/job_event.hpp"

#include <array>
#include <chrono>
#include <cstdio>
#include <utility>

#include "runtime/error.hpp"

namespace troupe::actors {

namespace {

constexpr std::array<std::pair<job_event_kind, const char*>, 8> event_kinds{{
    {job_event_kind::waiting, "waiting"},
    {job_event_kind::plan, "plan"},
    {job_event_kind::progress, "progress"},
    {job_event_kind::epoch, "epoch"},
    {job_event_kind::restart, "restart"},
    {job_event_kind::recovered, "recovered"},
    {job_event_kind::rebalance, "rebalance"},
    {job_event_kind::summary, "summary"},
}};

std::string event_format(const char* fmt, auto... args) {
  char buf[512];
  std::snprintf(buf, sizeof buf, fmt, args...);
  return buf;
}

std::string epoch_line(const nlohmann::json& f) {
  auto s = event_format("epoch %lld: train loss %.4f", f.value("epoch", 0LL),
                        f.value("train_loss", 0.0));
  auto num = [&](const char* k) { return f.contains(k) && f.at(k).is_number(); };
  if (num("bits_per_char"))
    s += event_format(", held-out loss %.4f (%.3f bits/char)", f.value("test_loss", 0.0),
                      f.value("bits_per_char", 0.0));
  else if (num("test_mse"))
    s += event_format(", test mse %.4g, mae %.4g", f.value("test_mse", 0.0),
                      f.value("test_mae", 0.0));
  else if (num("test_accuracy"))
    s += event_format(", test accuracy %.2f%%", 100.0 * f.value("test_accuracy", 0.0));
  return s;
}

} // namespace

const char* to_string(job_event_kind k) {
  for (const auto& [kind, name] : event_kinds)
    if (kind == k)
      return name;
  return "?";
}

nlohmann::json to_json(const job_event& e) {
  nlohmann::json j = e.fields.is_object() ? e.fields : nlohmann::json::object();
  j["event"] = to_string(e.kind);
  j["job"] = e.job;
  j["time"] = e.time;
  return j;
}

job_event job_event_from_json(const nlohmann::json& j) {
  if (!j.is_object() || !j.contains("event") || !j.at("event").is_string())
    throw runtime::input_error("job event without an \"event\" kind: " + j.dump());
  job_event e;
  const auto name = j.at("event").get<std::string>();
  bool known = false;
  for (const auto& [kind, n] : event_kinds)
    if (name == n) {
      e.kind = kind;
      known = true;
    }
  if (!known)
    throw runtime::input_error("job event of unknown kind '" + name + "'");
  e.job = j.value("job", std::uint64_t{0});
  e.time = j.value("time", 0.0);
  e.fields = j;
  for (const char* k : {"event", "job", "time"})
    e.fields.erase(k);
  return e;
}

double job_event_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string describe(const job_event& e) {
  const auto& f = e.fields;
  const auto job = static_cast<unsigned long long>(e.job);
  switch (e.kind) {
  case job_event_kind::waiting:
    return event_format("job %llu waits for %d node(s) (%d ready)", job, f.value("expected", 0),
                        f.value("ready", 0));
  case job_event_kind::plan:
    return f.value("text", "");
  case job_event_kind::epoch:
    return epoch_line(f);
  case job_event_kind::restart:
    return event_format("job %llu generation %d failed: %s; recovering (restart %d of at most %d)",
                        job, f.value("generation", 0), f.value("what", "").c_str(),
                        f.value("restart", 0), f.value("max_restarts", 0));
  case job_event_kind::recovered:
    return event_format("job %llu: generation %d on %d stage(s) x %d replica(s) x tp %d, from %s "
                        "(step %lld)",
                        job, f.value("generation", 0), f.value("stages", 0), f.value("replicas", 0),
                        f.value("tp", 0), f.value("source", "").c_str(), f.value("step", 0LL));
  case job_event_kind::rebalance:
    return event_format("job %llu: rebalanced at step %lld (%s): %s", job, f.value("step", 0LL),
                        f.value("kind", "").c_str(), f.value("why", "").c_str());
  case job_event_kind::progress:
    return event_format("step %lld/%lld, %.0f%% of epoch %d/%d, %.0f samples/s, loss %.4f",
                        f.value("step", 0LL), f.value("total_steps", 0LL), f.value("percent", 0.0),
                        f.value("epoch", 0), f.value("epochs", 0),
                        f.value("samples_per_second", 0.0), f.value("loss", 0.0));
  case job_event_kind::summary:
    return f.value("text", "");
  }
  return {};
}

} // namespace troupe::actors
