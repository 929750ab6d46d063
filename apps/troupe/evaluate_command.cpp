// `troupe evaluate`: a checkpoint's loss and accuracy (or held-out bits per
// character) on a data set's test split, through the training pipeline.

#include <cstdio>
#include <memory>
#include <string>

#include "apps/troupe/commands.hpp"
#include "apps/troupe/eval_flags.hpp"
#include "runtime/io/file_util.hpp"

namespace troupe::apps {

command_action add_evaluate_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "evaluate", "evaluate a checkpoint on a data set's test split (loss and accuracy, or "
                  "held-out bits per character), through the same actors as training");
  auto flags = std::make_shared<evaluation_flags>();
  auto report = std::make_shared<std::string>();
  add_evaluation_flags(cmd, *flags);
  cmd->add_option("--report", *report, "write a JSON report to FILE");
  return [flags, report] {
    auto result = run_evaluation_flags(*flags, false);
    auto r = evaluation_report(result.report, flags->request);
    if (!report->empty()) {
      auto text = r.dump(2) + "\n";
      runtime::write_file_atomically(
          *report, {reinterpret_cast<const std::byte*>(text.data()), text.size()});
    }
    print_evaluation(r);
    return exit_ok;
  };
}

} // namespace troupe::apps
