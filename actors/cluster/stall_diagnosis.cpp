#include "actors/cluster/stall_diagnosis.hpp"

#include <algorithm>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "actors/cluster/recovery.hpp"
#include "actors/protocol/messages.hpp"

namespace troupe::actors {

namespace {

/// How long a stall diagnosis waits for each actor's answer.
constexpr std::chrono::milliseconds doing_wait{1500};
/// The stall timeout's floor, and its multiple of the median step time.
constexpr double stall_floor_seconds = 5;
constexpr double stall_median_multiple = 10;
/// Before a generation's first step (actors starting, a resume loading).
constexpr double stall_first_step_seconds = 30;

/// The median of `xs` (not empty).
double median(std::vector<double> xs) {
  std::nth_element(xs.begin(), xs.begin() + static_cast<std::ptrdiff_t>(xs.size() / 2), xs.end());
  return xs[xs.size() / 2];
}

double stall_timeout(const job_state& job) {
  if (job.opts.stall_timeout_s > 0)
    return job.opts.stall_timeout_s;
  const auto& steps = job.recovery.step_seconds;
  if (steps.empty())
    return stall_first_step_seconds;
  return std::max(stall_floor_seconds, stall_median_multiple * median(steps));
}

/// One actor's answer to a stall diagnosis, or its silence.
struct stall_answer {
  std::string label, node;
  std::optional<nlohmann::json> doing;
};

/// Puts the answers into one message: what the trainer waits for, what
/// every stage does and waits for, and who is silent.
nlohmann::json stall_report(const job_state& job, double stalled,
                            const std::vector<stall_answer>& answers) {
  std::vector<std::string> parts, silent;
  nlohmann::json actors = nlohmann::json::array();
  for (const auto& a : answers) {
    const auto who = a.label + " (node " + a.node + ")";
    if (!a.doing) {
      silent.push_back(who);
      parts.push_back(fmt::format("{} has not answered for {:.1f} s", who, stalled));
      actors.push_back({{"actor", a.label}, {"node", a.node}, {"silent", true}});
      continue;
    }
    auto d = *a.doing;
    d["node"] = a.node;
    actors.push_back(d);
    std::string text = who + ": " + d.value("action", std::string{"?"});
    if (d.contains("waits_for")) {
      const auto& w = d["waits_for"];
      text += ", waits for " +
              (w.is_string() ? w.get<std::string>()
               : w.empty()   ? std::string{"nothing"}
                           : fmt::format("{}", fmt::join(w.get<std::vector<std::string>>(), ", ")));
    }
    parts.push_back(text);
  }
  const auto step = job.recovery.last_step;
  auto message = fmt::format("step {}: no step completed for {:.1f} s; {}", step, stalled,
                             fmt::join(parts, "; "));
  return {{"step", step},
          {"stalled_seconds", stalled},
          {"silent", silent},
          {"actors", actors},
          {"message", message}};
}

/// Asks the trainer and every layer shard what it does; the report names
/// them and the silent ones, then the job recovers.
void diagnose_stall(supervisor_actor* self, double stalled) {
  auto& st = self->state;
  auto& job = st.job;
  job.recovery.diagnosing = true;
  struct pending {
    std::vector<stall_answer> answers;
    std::size_t left = 0;
    std::vector<caf::actor_addr> addrs;
  };
  auto acc = std::make_shared<pending>();
  std::vector<std::pair<caf::actor, std::size_t>> asks;
  for (const auto& [addr, a] : job.actors)
    if (a.kind == "trainer" || a.kind == "layer_shard") {
      acc->answers.push_back({a.label, a.node, std::nullopt});
      acc->addrs.push_back(addr);
      asks.emplace_back(a.handle, acc->answers.size() - 1);
    }
  acc->left = asks.size();
  const auto wire = job.wire();
  auto done = [self, acc, wire, stalled] {
    auto& st = self->state;
    auto& job = st.job;
    job.recovery.diagnosing = false;
    if (job.wire() != wire || job.phase != job_phase::running)
      return;
    auto report = stall_report(job, stalled, acc->answers);
    job.recovery.last_stall = report;
    st.log->error("job {} stalled: {}", job.id, report["message"].get<std::string>());
    failure f;
    f.what = "stall: " + report["message"].get<std::string>();
    for (std::size_t i = 0; i < acc->answers.size(); ++i)
      if (!acc->answers[i].doing)
        job.recovery.lost_actors.push_back(acc->addrs[i]);
    job_failed(self, std::move(f));
  };
  if (asks.empty()) {
    done();
    return;
  }
  for (const auto& [handle, i] : asks)
    self->request(handle, doing_wait, doing_atom::value)
        .then(
            [acc, i = i, done](std::string& text) {
              try {
                acc->answers[i].doing = nlohmann::json::parse(text);
              } catch (const nlohmann::json::exception&) {
              }
              if (--acc->left == 0)
                done();
            },
            [acc, done](caf::error&) {
              if (--acc->left == 0)
                done();
            });
}

} // namespace

void poll_doing(supervisor_actor* self) {
  auto& job = self->state.job;
  if (job.phase != job_phase::running)
    return;
  const auto wire = job.wire();
  for (auto& [addr, a] : job.actors) {
    if (a.kind != "trainer" && a.kind != "layer_shard")
      continue;
    self->request(a.handle, std::chrono::seconds(1), doing_atom::value)
        .then(
            [self, wire, addr = addr](std::string& text) {
              auto& job = self->state.job;
              auto it = job.actors.find(addr);
              if (job.wire() != wire || it == job.actors.end())
                return;
              try {
                it->second.doing = nlohmann::json::parse(text);
              } catch (const nlohmann::json::exception&) {
              }
            },
            [self, wire, addr = addr](caf::error&) {
              auto& job = self->state.job;
              auto it = job.actors.find(addr);
              if (job.wire() == wire && it != job.actors.end())
                it->second.doing = {{"action", "silent: no answer within 1 s"}};
            });
  }
}

void check_stall(supervisor_actor* self) {
  auto& job = self->state.job;
  if (job.phase != job_phase::running || job.recovery.diagnosing || job.recovery.growing)
    return;
  const double stalled = seconds_since(job.recovery.last_progress);
  if (stalled > stall_timeout(job))
    diagnose_stall(self, stalled);
}

} // namespace troupe::actors
