#include "apps/troupe/eval_flags.hpp"

#include <cstdio>
#include <fstream>
#include <string>

#include <caf/actor_system.hpp>
#include <nlohmann/json.hpp>

#include "actors/protocol/system_config.hpp"
#include "runtime/error.hpp"

namespace troupe::apps {

void add_evaluation_flags(CLI::App* cmd, evaluation_flags& f) {
  auto& r = f.request;
  cmd->add_option("--checkpoint", r.checkpoint,
                  "the checkpoint directory (`train --checkpoint DIR`); its manifest holds the "
                  "model spec and the training options")
      ->required();
  cmd->add_option("--data", r.data,
                  "the data, as `train --data` takes it (default: the checkpoint's training "
                  "data); evaluated is its test split (MNIST's t10k files, a text's held-out "
                  "last 10%)");
  cmd->add_option("--stages,--pp", r.stages, "pipeline depth to evaluate on")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  cmd->add_option("--tp", r.tp, "tensor parallelism to evaluate on")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  cmd->add_option("--dp", r.dp, "replicas (replica 0 evaluates; as in training)")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  cmd->add_option("--microbatches", r.microbatches, "micro-batches per evaluation batch")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  cmd->add_option("--plan", f.plan_file,
                  "evaluate on the topology saved in FILE (`troupe plan ... --save FILE`); a "
                  "model that is not in the zoo needs one (the plan holds its spec)");
  cmd->add_option("--threads", r.threads, "compute threads in all (default: one per core)")
      ->check(CLI::Range(1, 1024));
  cmd->add_flag("--no-progress", f.no_progress, "no progress output");
}

actors::job_result run_evaluation_flags(evaluation_flags& f, bool predict) {
  auto& r = f.request;
  r.predict = predict;
  r.progress = !f.no_progress;
  if (!f.plan_file.empty()) {
    std::ifstream in{f.plan_file};
    if (!in)
      throw runtime::input_error("--plan " + f.plan_file + ": cannot open");
    try {
      r.plan = nlohmann::json::parse(in);
    } catch (const nlohmann::json::exception& e) {
      throw runtime::input_error("--plan " + f.plan_file + ": not JSON: " + e.what());
    }
  }
  actors::system_config cfg;
  caf::actor_system sys{cfg};
  return actors::run_evaluation(sys, r);
}

/// The --report of an evaluation: the training report's fields that describe
/// the test set's figures and where they were computed, under the same names.
nlohmann::json evaluation_report(const nlohmann::json& r, const actors::evaluation_request& req) {
  nlohmann::json out{{"checkpoint", req.checkpoint}, {"data", r.at("config").at("data_dir")}};
  for (const char* key :
       {"model", "strategy", "steps", "test_accuracy", "test_loss", "bits_per_char", "test_samples",
        "replicas", "tp", "wall_seconds", "threads", "git_commit", "plan", "input_normalization"})
    if (r.contains(key))
      out[key] = r.at(key);
  return out;
}

/// Prints the evaluation's line: accuracy and loss, or held-out bits per char.
void print_evaluation(const nlohmann::json& r) {
  std::printf("model %s, checkpoint step %lld, %s: ", r.at("model").get<std::string>().c_str(),
              static_cast<long long>(r.at("steps").get<std::int64_t>()),
              r.at("strategy").get<std::string>().c_str());
  if (!r.at("bits_per_char").is_null())
    std::printf("held-out loss %.4f, %.3f bits/char", r.at("test_loss").get<double>(),
                r.at("bits_per_char").get<double>());
  else
    std::printf("test accuracy %.2f%%, test loss %.4f", 100.0 * r.at("test_accuracy").get<double>(),
                r.at("test_loss").get<double>());
  std::printf(" on %lld samples\n",
              static_cast<long long>(r.at("test_samples").get<std::int64_t>()));
}

} // namespace troupe::apps
