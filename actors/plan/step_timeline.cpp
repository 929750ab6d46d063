#include "actors/plan/step_timeline.hpp"

#include <algorithm>
#include <map>
#include <optional>
#include <string>
#include <utility>

#include "runtime/error.hpp"

namespace troupe::actors {

namespace {

using track_id = std::pair<std::int64_t, std::int64_t>; // (pid, tid)
using role = std::pair<int, int>;                       // (replica, stage)
constexpr role trainer_track{-1, -1};

/// The number at `at` in `name` and the index past it; nullopt when none.
std::optional<std::pair<int, std::size_t>> number_at(const std::string& name, std::size_t at) {
  std::size_t used = 0;
  try {
    int k = std::stoi(name.substr(at), &used);
    if (k >= 0)
      return std::pair{k, at + used};
  } catch (const std::exception&) {
  }
  return std::nullopt;
}

/// "stage 3 (node ...)" -> (0, 3), "replica 1 stage 0 (...)" -> (1, 0),
/// "trainer (pid ...)" -> trainer_track, else nothing.
std::optional<role> role_of(const std::string& name) {
  if (name.rfind("trainer (", 0) == 0)
    return trainer_track;
  int replica = 0;
  std::size_t at = 0;
  if (name.rfind("replica ", 0) == 0) {
    auto r = number_at(name, 8);
    if (!r || name.compare(r->second, 7, " stage ") != 0)
      return std::nullopt;
    replica = r->first;
    at = r->second + 1;
  }
  if (name.compare(at, 6, "stage ") != 0)
    return std::nullopt;
  auto k = number_at(name, at + 6);
  if (k && name.compare(k->second, 2, " (") == 0)
    return role{replica, k->first};
  return std::nullopt;
}

std::int64_t int_arg(const nlohmann::json& e, const char* key, std::int64_t fallback) {
  auto a = e.find("args");
  if (a == e.end() || !a->is_object())
    return fallback;
  auto v = a->find(key);
  return v != a->end() && v->is_number_integer() ? v->get<std::int64_t>() : fallback;
}

void add_to_chunk(std::vector<double>& by_chunk, std::int64_t chunk, double seconds) {
  if (chunk < 0 || chunk > 1024)
    throw runtime::input_error("trace: compute event of chunk " + std::to_string(chunk));
  auto c = static_cast<std::size_t>(chunk);
  if (by_chunk.size() <= c)
    by_chunk.resize(c + 1, 0.0);
  by_chunk[c] += seconds;
}

/// A compute event of a stage track: forward / backward (per chunk), the
/// optimizer or the gradient norm, and the copies inside it.
void add_compute(step_timeline::stage& s, const nlohmann::json& e, const std::string& name,
                 double ts, double dur) {
  const auto copy_ns = int_arg(e, "copy_ns", -1);
  const double copies = copy_ns > 0 ? 1e-9 * static_cast<double>(copy_ns) : 0.0;
  if (copy_ns >= 0)
    s.copies_measured = true;
  if (name == "forward" || name == "backward" || name == "weight") {
    const bool f = name == "forward", b = name == "backward";
    (f ? s.forward : b ? s.backward : s.weight) += dur;
    add_to_chunk(f   ? s.forward_by_chunk
                 : b ? s.backward_by_chunk
                     : s.weight_by_chunk,
                 int_arg(e, "chunk", 0), dur);
    s.compute_copies += copies;
    s.last_compute_end = std::max(s.last_compute_end, ts + dur);
  } else if (name == "optimizer" || name == "grad norm") {
    (name == "optimizer" ? s.optimizer : s.grad_norm) += dur;
    s.optimizer_copies += copies;
  }
}

} // namespace

double step_timeline::begin() const {
  double b = stages.empty() ? 0 : stages.front().begin;
  for (const auto& s : stages)
    b = std::min(b, s.begin);
  return b;
}

double step_timeline::end() const {
  double e = stages.empty() ? 0 : stages.front().end;
  for (const auto& s : stages)
    e = std::max(e, s.end);
  return e;
}

double step_timeline::bubble() const {
  const double t = seconds();
  if (stages.empty() || t <= 0)
    return 0;
  double idle = 0;
  for (const auto& s : stages)
    idle += t - s.busy();
  return idle / (static_cast<double>(stages.size()) * t);
}

std::vector<step_timeline> step_timelines(const nlohmann::json& chrome_trace) {
  try {
    const auto& events = chrome_trace.at("traceEvents");
    // Stage tracks get indices in (replica, stage) order; the trainer -1.
    std::map<track_id, role> track_roles;
    std::map<role, int> slots;
    for (const auto& e : events)
      if (e.at("ph") == "M" && e.at("name") == "thread_name")
        if (auto r = role_of(e.at("args").at("name").get<std::string>())) {
          track_roles[{e.at("pid").get<std::int64_t>(), e.at("tid").get<std::int64_t>()}] = *r;
          if (*r != trainer_track)
            slots[*r] = 0;
        }
    const int stage_count = static_cast<int>(slots.size());
    if (stage_count == 0)
      throw runtime::input_error("trace: no stage tracks");
    std::vector<role> slot_roles;
    for (auto& [r, index] : slots) {
      index = static_cast<int>(slot_roles.size());
      slot_roles.push_back(r);
    }
    std::map<track_id, int> roles;
    for (const auto& [track, r] : track_roles)
      roles[track] = r == trainer_track ? -1 : slots.at(r);

    struct partial {
      std::vector<step_timeline::stage> stages;
      std::vector<char> has_span;
      int microbatches = 0;
      double trainer_seconds = 0, trainer_begin = 0, trainer_wait = 0;
    };
    std::map<std::int64_t, partial> steps;
    auto step_of = [&](std::int64_t id) -> partial& {
      auto& p = steps[id];
      if (p.stages.empty()) {
        p.stages.resize(static_cast<std::size_t>(stage_count));
        p.has_span.assign(static_cast<std::size_t>(stage_count), 0);
        for (int k = 0; k < stage_count; ++k) {
          auto& s = p.stages[static_cast<std::size_t>(k)];
          s.replica = slot_roles[static_cast<std::size_t>(k)].first;
          s.index = slot_roles[static_cast<std::size_t>(k)].second;
        }
      }
      return p;
    };
    for (const auto& e : events) {
      if (e.at("ph") != "X")
        continue;
      auto role = roles.find({e.at("pid").get<std::int64_t>(), e.at("tid").get<std::int64_t>()});
      const auto step = int_arg(e, "step", -1);
      if (role == roles.end() || step < 0)
        continue; // another track, or evaluation (negative ids)
      const auto name = e.at("name").get<std::string>();
      const auto cat = e.at("cat").get<std::string>();
      const double ts = e.at("ts").get<double>() * 1e-6; // microseconds in the file
      const double dur = e.at("dur").get<double>() * 1e-6;
      auto& p = step_of(step);
      if (role->second < 0) {
        if (name == "step" && cat == "step") {
          p.trainer_seconds = dur;
          p.trainer_begin = ts;
        } else if (name == "wait batch" && cat == "wait") {
          p.trainer_wait = dur;
        }
        continue;
      }
      auto k = static_cast<std::size_t>(role->second);
      auto& s = p.stages[k];
      if (name == "step" && cat == "step") {
        s.begin = ts;
        s.end = ts + dur;
        p.has_span[k] = 1;
        p.microbatches = static_cast<int>(int_arg(e, "microbatches", 0));
      } else if (cat == "compute") {
        add_compute(s, e, name, ts, dur);
      } else if (cat == "wait" && name == "wait") {
        s.wait += dur;
      } else if (cat == "handoff") {
        s.handoffs += dur;
      } else if (cat == "comm" && name == "allreduce") {
        s.allreduce_end = std::max(s.allreduce_end, ts + dur);
      }
    }
    std::vector<step_timeline> r;
    for (auto& [id, p] : steps) {
      if (std::count(p.has_span.begin(), p.has_span.end(), 1) != stage_count)
        continue; // a step the trace holds only part of (dropped events)
      step_timeline t;
      t.step = id;
      t.microbatches = p.microbatches;
      t.trainer_seconds = p.trainer_seconds;
      t.trainer_begin = p.trainer_begin;
      t.trainer_wait = p.trainer_wait;
      t.stages = std::move(p.stages);
      r.push_back(std::move(t));
    }
    return r;
  } catch (const nlohmann::json::exception& e) {
    throw runtime::input_error(std::string{"trace: not a troupe job trace: "} + e.what());
  }
}

} // namespace troupe::actors
