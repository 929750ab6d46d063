#include <cstdio>
#include <filesystem>
#include <memory>
#include <thread>

#include <caf/actor_system.hpp>
#include <caf/scoped_actor.hpp>

#include "actors/cluster/job.hpp"
#include "actors/cluster/job_event.hpp"
#include "actors/plan/plan.hpp"
#include "actors/protocol/messages.hpp"
#include "actors/protocol/system_config.hpp"
#include "apps/troupe/cluster_net.hpp"
#include "apps/troupe/commands.hpp"
#include "apps/troupe/job_watch.hpp"
#include "apps/troupe/local_train.hpp"
#include "apps/troupe/metrics_csv.hpp"
#include "apps/troupe/shutdown_signal.hpp"
#include "apps/troupe/train_checks.hpp"
#include "apps/troupe/train_flags.hpp"
#include "runtime/error.hpp"
#include "runtime/io/file_util.hpp"
#include "runtime/log.hpp"
#include "runtime/net/caf_error.hpp"

namespace troupe::apps {

namespace {

struct remote_flags {
  std::string supervisor;
  std::string name = "client";
  int connect_timeout_s = 10;
  security_flags security;
  bool quiet = false;
  bool json_progress = false;
};

/// The options with their data paths made absolute against this client's
/// working directory: whoever reads them (the nodes, or the supervisor with
/// --data-from supervisor) runs elsewhere, so a relative path, the default
/// data/mnist included, means what it means here.
actors::train_options with_absolute_paths(actors::train_options o) {
  for (auto* p : {&o.data_dir, &o.test_data})
    if (!p->empty())
      *p = std::filesystem::absolute(*p).lexically_normal().string();
  return o;
}

/// Submits the job to a running supervisor and waits for its answer, or for
/// the supervisor to go away (a request to a dead remote actor would never
/// fail on its own).
actors::job_result run_remote(const actors::train_options& o, const remote_flags& r,
                              job_watch& watch) {
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
  // With events: the supervisor streams the job's (job_event.hpp) until the reply.
  const auto submitted = actors::to_json(with_absolute_paths(o)).dump();
  if (watch.wants_events())
    self->send(sup, actors::run_atom::value, actors::job_event_atom::value, submitted);
  else
    self->send(sup, actors::run_atom::value, submitted);
  actors::job_result result;
  std::optional<std::string> failure;
  bool bad_input = false;
  bool waiting = true;
  self->receive_while(waiting)(
      [&](actors::job_event_atom, std::string& text) {
        try {
          watch.show(actors::job_event_from_json(nlohmann::json::parse(text)));
        } catch (const std::exception&) {
          // An event this client cannot read is not worth failing the job for.
        }
      },
      [&](std::string& report, runtime::named_tensors& params) {
        waiting = false;
        result.report = nlohmann::json::parse(report);
        for (std::size_t i = 0; i < params.names.size(); ++i)
          result.params.emplace_back(params.names[i], params.tensors[i]);
      },
      [&](caf::error& err) {
        waiting = false;
        failure = runtime::describe(sys, err);
        bad_input = err.category() == caf::atom("system") &&
                    err.code() == static_cast<std::uint8_t>(caf::sec::invalid_argument);
      },
      [&](caf::down_msg& dm) {
        waiting = false;
        failure = dm.reason == caf::exit_reason::remote_link_unreachable
                      ? "lost the connection to the supervisor at " + at.to_string() +
                            " during the job (it stopped or the network failed)"
                      : "the supervisor at " + at.to_string() +
                            " went away: " + runtime::describe(sys, dm.reason);
      });
  if (failure) {
    if (bad_input)
      throw runtime::input_error(*failure);
    throw std::runtime_error(*failure);
  }
  return result;
}

/// How the job is shown: --quiet and --json-progress (a --supervisor
/// client's) checked against each other and the run's mode; --quiet turns
/// a local run's progress output off.
job_watch make_watch(const remote_flags& r, actors::train_options& o) {
  if (r.quiet && r.json_progress)
    throw runtime::input_error("--quiet and --json-progress exclude each other");
  if (r.json_progress && r.supervisor.empty())
    throw runtime::input_error(
        "--json-progress needs --supervisor (a local run shows its progress on stderr; "
        "--report FILE writes its result as JSON)");
  if (r.quiet) {
    o.progress = false;
    // A local run's supervisor logs the job at info: quiet unless a
    // --log-level (or TROUPE_LOG_LEVEL) asked for more.
    if (runtime::logger("supervisor")->level() == spdlog::level::info)
      runtime::set_log_level("warn");
    return job_watch{watch_mode::quiet, false};
  }
  return job_watch{r.json_progress ? watch_mode::json : watch_mode::human, o.progress};
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
  cmd->add_flag("--quiet", remote->quiet, "print only the final summary");
  cmd->add_flag("--json-progress", remote->json_progress,
                "with --supervisor: print the job's events (waiting, plan, progress, epoch, "
                "restart, rebalance, summary) as one JSON object per line on stdout");
  add_security_flags(cmd, remote->security);
  auto metrics_csv = std::make_shared<std::string>();
  cmd->add_option("--metrics-csv", *metrics_csv,
                  "write the per-step metrics to FILE as CSV: step, steps, epoch, loss, "
                  "train_accuracy, lr, samples_per_second, busy_stage0... (each stage's compute "
                  "over the step's time); the report's \"step_series\" (docs/report.md)");
  cmd->add_flag("--overwrite", flags->opts.overwrite,
                "with --checkpoint DIR: replace a checkpoint already there (without it such a "
                "run is refused, unless it resumes that checkpoint)");
  return [flags, report, remote, metrics_csv, cmd] {
    finish_training_flags(*flags);
    auto watch = make_watch(*remote, flags->opts);
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
      result = run_remote(o, *remote, watch);
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
    if (watch.mode() == watch_mode::json) {
      watch.show_summary(r);
      return exit_ok;
    }
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
