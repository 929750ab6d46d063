#include <cstdio>
#include <memory>
#include <thread>

#include <caf/actor_system.hpp>

#include "actors/job.hpp"
#include "actors/plan.hpp"
#include "apps/troupe/commands.hpp"
#include "apps/troupe/train_flags.hpp"
#include "runtime/error.hpp"
#include "runtime/file_util.hpp"
#include "runtime/system_config.hpp"

namespace troupe::apps {

command_action add_train_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("train", "train a model on MNIST through actors");
  auto flags = std::make_shared<training_flags>();
  auto report = std::make_shared<std::string>();
  add_training_flags(cmd, *flags);
  cmd->add_option("--report", *report, "write a JSON report to FILE");
  return [flags, report] {
    finish_training_flags(*flags);
    const auto& o = flags->opts;
    auto topology = actors::make_plan(o, std::max(1u, std::thread::hardware_concurrency()));
    if (o.progress)
      std::fprintf(stderr, "%s: %s\n%s", o.model.c_str(), topology.strategy().c_str(),
                   actors::describe(topology).c_str());
    runtime::system_config cfg;
    caf::actor_system sys{cfg};
    auto result = actors::run_training(sys, o);
    const auto& r = result.report;
    if (!report->empty()) {
      auto text = r.dump(2) + "\n";
      runtime::write_file_atomically(
        *report, {reinterpret_cast<const std::byte*>(text.data()), text.size()});
    }
    std::printf("model %s, %s: %lld steps, final loss %.4f", o.model.c_str(),
                r.at("strategy").get<std::string>().c_str(),
                static_cast<long long>(r.at("steps").get<std::int64_t>()),
                r.at("final_loss").get<double>());
    if (!r.at("test_accuracy").is_null())
      std::printf(", test accuracy %.2f%%", 100.0 * r.at("test_accuracy").get<double>());
    std::printf(", %.0f samples/s, %.1f s\n", r.at("samples_per_second").get<double>(),
                r.at("wall_seconds").get<double>());
    return exit_ok;
  };
}

} // namespace troupe::apps
