#include <cstdio>
#include <memory>
#include <thread>

#include <caf/actor_system.hpp>
#include <caf/scoped_actor.hpp>

#include "actors/cluster/job.hpp"
#include "actors/plan/plan.hpp"
#include "actors/protocol/messages.hpp"
#include "actors/protocol/system_config.hpp"
#include "apps/troupe/cluster_net.hpp"
#include "apps/troupe/commands.hpp"
#include "apps/troupe/local_train.hpp"
#include "apps/troupe/metrics_csv.hpp"
#include "apps/troupe/shutdown_signal.hpp"
#include "apps/troupe/train_checks.hpp"
#include "apps/troupe/train_flags.hpp"
#include "runtime/error.hpp"
#include "runtime/io/file_util.hpp"
#include "runtime/net/caf_error.hpp"

namespace troupe::apps {

namespace {

struct remote_flags {
  std::string supervisor;
  std::string name = "client";
  int connect_timeout_s = 10;
  security_flags security;
};

/// Submits the job to a running supervisor and waits for its answer, or for
/// the supervisor to go away (a request to a dead remote actor would never
/// fail on its own).
actors::job_result run_remote(const actors::train_options& o, const remote_flags& r) {
  shutdown_signal signals;
  auto at = runtime::parse_host_port(r.supervisor, "--supervisor");
  auto tls = resolve_security(r.security, r.name, at.host);
  cluster_system_config cfg{tls, r.security};
  caf::actor_system sys{cfg};
  auto sup = connect_actor(sys, cfg.tls(), at, std::chrono::seconds(r.connect_timeout_s));
  caf::scoped_actor self{sys};
  self->monitor(sup);
  signals.watch([me = caf::actor{self}](int) {
    caf::anon_send(
        me, caf::make_error(caf::sec::runtime_error, "interrupted: the supervisor aborts the job"));
  });
  // A plain send: the supervisor's response promise answers it with a
  // normal message, so the down_msg of a dying supervisor is seen too. The
  // supervisor monitors this actor and aborts the job if the client goes away.
  self->send(sup, actors::run_atom::value, actors::to_json(o).dump());
  actors::job_result result;
  std::optional<std::string> failure;
  bool bad_input = false;
  self->receive(
      [&](std::string& report, runtime::named_tensors& params) {
        result.report = nlohmann::json::parse(report);
        for (std::size_t i = 0; i < params.names.size(); ++i)
          result.params.emplace_back(params.names[i], params.tensors[i]);
      },
      [&](caf::error& err) {
        failure = runtime::describe(sys, err);
        bad_input = err.category() == caf::atom("system") &&
                    err.code() == static_cast<std::uint8_t>(caf::sec::invalid_argument);
      },
      [&](caf::down_msg& dm) {
        failure = "the supervisor at " + at.to_string() +
                  " went away: " + runtime::describe(sys, dm.reason);
      });
  if (failure) {
    if (bad_input)
      throw runtime::input_error(*failure);
    throw std::runtime_error(*failure);
  }
  return result;
}

} // namespace

command_action add_train_command(CLI::App& app) {
  auto* cmd =
      app.add_subcommand("train", "train a model on MNIST, or a character language model on a "
                                  "text, through actors");
  auto flags = std::make_shared<training_flags>();
  auto report = std::make_shared<std::string>();
  auto remote = std::make_shared<remote_flags>();
  add_training_flags(cmd, *flags);
  cmd->add_option("--report", *report, "write a JSON report to FILE");
  cmd->add_option("--supervisor", remote->supervisor,
                  "submit the job to the cluster supervisor at HOST:PORT instead of running it "
                  "in this process");
  cmd->add_option("--name", remote->name,
                  "with --supervisor and --certs DIR: this client's certificate name")
      ->capture_default_str();
  cmd->add_option("--connect-timeout", remote->connect_timeout_s,
                  "with --supervisor: seconds to keep trying to reach it")
      ->capture_default_str()
      ->check(CLI::Range(1, 3600));
  add_security_flags(cmd, remote->security);
  auto metrics_csv = std::make_shared<std::string>();
  cmd->add_option("--metrics-csv", *metrics_csv,
                  "write the per-step metrics to FILE as CSV: step, epoch, loss (the step's), lr, "
                  "step_seconds, samples_per_second, busy_stage0... (each stage's compute over "
                  "the step's time); the report's \"step_metrics\" (docs/report.md)");
  cmd->add_flag("--overwrite", flags->opts.overwrite,
                "with --checkpoint DIR: replace a checkpoint already there (without it such a "
                "run is refused, unless it resumes that checkpoint)");
  return [flags, report, remote, metrics_csv, cmd] {
    finish_training_flags(*flags);
    const auto& o = flags->opts;
    const bool local = remote->supervisor.empty();
    check_plan_flags(*cmd, *flags);
    check_mode_flags(*cmd, *flags);
    check_train_outputs(*flags, *report, *metrics_csv, local);
    actors::job_result result;
    if (local) {
      warn_oversubscription(*flags, std::thread::hardware_concurrency());
      // The supervisor logs the plan (a measured partition is only known there).
      result = run_local(o);
    } else {
      result = run_remote(o, *remote);
      if (o.progress)
        std::fprintf(stderr, "%s: %s on the cluster at %s\n%s", o.model.c_str(),
                     result.report.at("strategy").get<std::string>().c_str(),
                     remote->supervisor.c_str(), result.report.value("placement", "").c_str());
    }
    const auto& r = result.report;
    if (!report->empty()) {
      auto text = r.dump(2) + "\n";
      runtime::write_file_atomically(
          *report, {reinterpret_cast<const std::byte*>(text.data()), text.size()});
    }
    if (!metrics_csv->empty())
      write_metrics_csv(*metrics_csv, r);
    if (auto status = report_early_end(o, r))
      return *status;
    std::printf("model %s, %s: %lld steps, final loss %.4f", o.model.c_str(),
                r.at("strategy").get<std::string>().c_str(),
                static_cast<long long>(r.at("steps").get<std::int64_t>()),
                r.at("final_loss").get<double>());
    if (!r.at("test_accuracy").is_null())
      std::printf(", test accuracy %.2f%%", 100.0 * r.at("test_accuracy").get<double>());
    if (!r.at("test_mae").is_null())
      std::printf(", test mse %.4g, mae %.4g", r.at("test_mse").get<double>(),
                  r.at("test_mae").get<double>());
    if (!r.at("bits_per_char").is_null())
      std::printf(", held-out %.3f bits/char", r.at("bits_per_char").get<double>());
    std::printf(", %.0f samples/s, %.1f s\n", r.at("samples_per_second").get<double>(),
                r.at("wall_seconds").get<double>());
    return exit_ok;
  };
}

} // namespace troupe::apps
