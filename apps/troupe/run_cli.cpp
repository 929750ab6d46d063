// The troupe CLI: `troupe train`, `troupe plan`, `troupe bench`, ... (`troupe --help`),
// as library entry points (entry_points.hpp) that apps/main.cpp and users' programs call.

#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "apps/troupe/commands.hpp"
#include "apps/troupe/entry_points.hpp"
#include "runtime/error.hpp"
#include "runtime/log.hpp"
#include "runtime/telemetry/crash_report.hpp"

int troupe::run_cli(int argc, char** argv) {
  using namespace troupe::apps;
  CLI::App app{"troupe: an actor runtime for distributed deep-learning training"};
  app.require_subcommand(1);
  // Options of the app itself (--log-level) are accepted after the
  // subcommand too: `troupe train ... --log-level debug`.
  app.fallthrough();
  std::string log_level;
  app.add_option("--log-level", log_level,
                 "trace|debug|info|warn|error|off (env TROUPE_LOG_LEVEL); before or after "
                 "the subcommand");
  auto train = add_train_command(app);
  auto plan = add_plan_command(app);
  auto bench = add_bench_command(app);
  auto supervisor = add_supervisor_command(app);
  auto node = add_node_command(app);
  auto certs = add_certs_command(app);
  auto evaluate = add_evaluate_command(app);
  auto predict = add_predict_command(app);
  auto generate = add_generate_command(app);
  auto report = add_report_command(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // CLI11 prints help and errors itself; a parse error is bad input.
    auto status = app.exit(e);
    return status == 0 ? exit_ok : exit_bad_input;
  }
  if (!log_level.empty() && !troupe::runtime::set_log_level(log_level)) {
    std::fprintf(stderr, "error: --log-level: unknown level '%s'\n", log_level.c_str());
    return exit_bad_input;
  }
  // Every way out that is not a clean shutdown leaves a line on stderr.
  troupe::runtime::install_crash_report("troupe " + app.get_subcommands().front()->get_name());
  try {
    if (app.got_subcommand("train"))
      return train();
    if (app.got_subcommand("plan"))
      return plan();
    if (app.got_subcommand("bench"))
      return bench();
    if (app.got_subcommand("supervisor"))
      return supervisor();
    if (app.got_subcommand("node"))
      return node();
    if (app.got_subcommand("certs"))
      return certs();
    if (app.got_subcommand("evaluate"))
      return evaluate();
    if (app.got_subcommand("predict"))
      return predict();
    if (app.got_subcommand("generate"))
      return generate();
    if (app.got_subcommand("report"))
      return report();
  } catch (const troupe::runtime::input_error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return exit_bad_input;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return exit_failure;
  }
  return exit_bad_input;
}

namespace {

/// `argv[0] COMMAND argv[1..]`, for run_cli.
int run_subcommand(const char* command, int argc, char** argv) {
  std::vector<std::string> args{argc > 0 ? argv[0] : "troupe", command};
  for (int i = 1; i < argc; ++i)
    args.emplace_back(argv[i]);
  std::vector<char*> ptrs;
  for (auto& a : args)
    ptrs.push_back(a.data());
  ptrs.push_back(nullptr);
  return troupe::run_cli(static_cast<int>(args.size()), ptrs.data());
}

} // namespace

int troupe::run_node(int argc, char** argv) {
  return run_subcommand("node", argc, argv);
}

int troupe::run_supervisor(int argc, char** argv) {
  return run_subcommand("supervisor", argc, argv);
}
