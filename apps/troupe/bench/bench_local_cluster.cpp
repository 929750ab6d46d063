#include "apps/troupe/bench/bench_local_cluster.hpp"

#include <chrono>
#include <fstream>
#include <stdexcept>

#include "actors/plan/schedule.hpp"
#include "apps/troupe/bench/bench_util.hpp"

namespace troupe::apps {

namespace fs = std::filesystem;
using actors::schedule_kind;

local_cluster::local_cluster(const fs::path& dir, int nodes, int threads_per_device, int jobs)
    : dir_(dir) {
  exe_ = self_exe().string();
  const auto info = dir_ / "supervisor.json";
  supervisor_ = std::make_unique<child_process>(
      std::vector<std::string>{exe_, "--log-level", "warn", "supervisor", "--listen", "127.0.0.1:0",
                               "--expect-nodes", std::to_string(nodes), "--insecure-plain",
                               "--info-file", info.string(), "--jobs", std::to_string(jobs)},
      dir_ / "supervisor.log");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!fs::exists(info)) {
    if (supervisor_->wait_for(std::chrono::milliseconds(20)))
      throw std::runtime_error("the supervisor exited:\n" + supervisor_->log_tail());
    if (std::chrono::steady_clock::now() > deadline)
      throw std::runtime_error("the supervisor did not start within 30 s:\n" +
                               supervisor_->log_tail());
  }
  std::ifstream in(info);
  port_ = nlohmann::json::parse(in).at("port").get<int>();
  for (int k = 0; k < nodes; ++k)
    nodes_.push_back(std::make_unique<child_process>(
        std::vector<std::string>{exe_, "--log-level", "warn", "node", "--supervisor", address(),
                                 "--insecure-plain", "--name", "node-" + std::to_string(k),
                                 "--devices", "cpu:1x" + std::to_string(threads_per_device),
                                 "--no-measure"},
        dir_ / ("node-" + std::to_string(k) + ".log")));
}

nlohmann::json local_cluster::train(const actors::train_options& o, int index) {
  const auto report = dir_ / ("report-" + std::to_string(index) + ".json");
  std::vector<std::string> a{exe_,
                             "--log-level",
                             "warn",
                             "train",
                             "--supervisor",
                             address(),
                             "--insecure-plain",
                             "--report",
                             report.string(),
                             "--model",
                             o.model,
                             "--data",
                             fs::absolute(o.data_dir).string(),
                             "--batch",
                             std::to_string(o.batch),
                             "--optimizer",
                             o.optimizer,
                             "--lr",
                             number(o.lr),
                             "--pp",
                             std::to_string(o.stages),
                             "--microbatches",
                             std::to_string(o.microbatches),
                             "--schedule",
                             std::string{actors::to_string(o.schedule)},
                             "--steps",
                             std::to_string(o.max_steps),
                             "--trace",
                             o.trace_file,
                             "--no-eval",
                             "--no-progress"};
  if (o.schedule == schedule_kind::interleaved)
    a.insert(a.end(), {"--virtual-stages", std::to_string(o.virtual_stages)});
  if (o.slow_stage >= 0)
    a.insert(a.end(), {"--slow-stage", std::to_string(o.slow_stage), "--slow-factor",
                       number(o.slow_factor)});
  child_process client{a, dir_ / ("client-" + std::to_string(index) + ".log")};
  auto status = client.wait_for(std::chrono::minutes(10));
  if (status != 0)
    throw std::runtime_error(
        "the job " + (status ? "failed (exit " + std::to_string(*status) + ")" : "timed out") +
        ":\n" + client.log_tail() + "\nsupervisor log:\n" + supervisor_->log_tail());
  std::ifstream in(report);
  return nlohmann::json::parse(in);
}

} // namespace troupe::apps
