#pragma once

#include <functional>

#include <CLI/CLI.hpp>

namespace troupe::apps {

/// Each subcommand registers its flags on `app` and returns the action to run
/// when it is selected; the action returns the process exit status.
using command_action = std::function<int()>;

command_action add_train_command(CLI::App& app);
command_action add_plan_command(CLI::App& app);
command_action add_bench_command(CLI::App& app);
command_action add_certs_command(CLI::App& app);
command_action add_supervisor_command(CLI::App& app);
command_action add_node_command(CLI::App& app);
command_action add_evaluate_command(CLI::App& app);
command_action add_predict_command(CLI::App& app);
command_action add_generate_command(CLI::App& app);
command_action add_report_command(CLI::App& app);

/// Exit statuses shared by all subcommands.
inline constexpr int exit_ok = 0;
inline constexpr int exit_failure = 1;   ///< the job failed (an actor died, ...)
inline constexpr int exit_bad_input = 2; ///< bad flags, files, config or checkpoint

} // namespace troupe::apps
