// `troupe bench`: registers every benchmark under it and runs the one chosen.

#include <CLI/CLI.hpp>

#include "apps/troupe/bench/bench_allreduce.hpp"
#include "apps/troupe/bench/bench_hetero.hpp"
#include "apps/troupe/bench/bench_pipeline.hpp"
#include "apps/troupe/bench/bench_ps.hpp"
#include "apps/troupe/bench/bench_recovery.hpp"
#include "apps/troupe/bench/bench_train.hpp"
#include "apps/troupe/bench/bench_transport.hpp"
#include "apps/troupe/commands.hpp"

namespace troupe::apps {

command_action add_bench_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "bench", "benchmarks (train, transport, pipeline, allreduce, ps, recovery, hetero)");
  cmd->require_subcommand(1);
  auto train = add_bench_train_command(*cmd);
  auto transport = add_bench_transport_command(*cmd);
  auto pipeline = add_bench_pipeline_command(*cmd);
  auto allreduce = add_bench_allreduce_command(*cmd);
  auto ps = add_bench_ps_command(*cmd);
  auto recovery = add_bench_recovery_command(*cmd);
  auto hetero = add_bench_hetero_command(*cmd);
  return [cmd, train, transport, pipeline, allreduce, ps, recovery, hetero] {
    if (cmd->got_subcommand("train"))
      return train();
    if (cmd->got_subcommand("pipeline"))
      return pipeline();
    if (cmd->got_subcommand("allreduce") || cmd->got_subcommand("allreduce-rank"))
      return allreduce();
    if (cmd->got_subcommand("ps") || cmd->got_subcommand("ps-rank"))
      return ps();
    if (cmd->got_subcommand("recovery"))
      return recovery();
    if (cmd->got_subcommand("hetero"))
      return hetero();
    return transport(); // bench transport (or its receiver), else exit_bad_input
  };
}

} // namespace troupe::apps
