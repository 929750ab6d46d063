#include "apps/troupe/train_checks.hpp"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <numeric>
#include <vector>

#include <fmt/format.h>

#include "actors/plan/plan.hpp"
#include "models/train/sequence_loss.hpp"
#include "models/zoo.hpp"
#include "runtime/error.hpp"
#include "runtime/io/output_path.hpp"

namespace troupe::apps {

namespace {

/// Weights as fractions of their sum (batch shares compare that way).
std::vector<double> normalized(std::vector<double> w) {
  const double sum = std::accumulate(w.begin(), w.end(), 0.0);
  for (auto& x : w)
    x = sum > 0 ? x / sum : x;
  return w;
}

bool same_shares(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size())
    return false;
  auto x = normalized(a), y = normalized(b);
  for (std::size_t i = 0; i < x.size(); ++i)
    if (std::abs(x[i] - y[i]) > 1e-9)
      return false;
  return true;
}

std::string shares_text(const std::vector<double>& w) {
  std::string r;
  for (auto x : w) {
    r += r.empty() ? "" : ",";
    r += fmt::format("{:g}", x);
  }
  return r;
}

} // namespace

void check_train_outputs(const training_flags& f, const std::string& report,
                         const std::string& metrics_csv, bool local) {
  if (!report.empty())
    runtime::check_output_file("--report", report, false);
  if (!metrics_csv.empty())
    runtime::check_output_file("--metrics-csv", metrics_csv, false);
  if (!local) // the supervisor's host writes these, and checks them itself
    return;
  if (!f.opts.trace_file.empty())
    runtime::check_output_file("--trace", f.opts.trace_file, true);
  if (!f.opts.checkpoint_dir.empty())
    runtime::check_output_directory("--checkpoint", f.opts.checkpoint_dir);
}

void check_plan_flags(const CLI::App& cmd, const training_flags& f) {
  if (f.opts.plan.is_null())
    return;
  const auto p = actors::plan_from_json(f.opts.plan);
  const auto file = std::filesystem::path(f.plan_file).filename().string();
  const auto& o = f.opts;
  auto refuse = [&](const std::string& flag, const std::string& given, const std::string& its) {
    throw runtime::input_error(flag + " " + given + " conflicts with " + file + "'s " + its +
                               ": drop " + flag + " or edit the plan");
  };
  auto given = [&](const char* flag) { return cmd.count(flag) > 0; };
  auto number = [](int n, const char* what) { return std::to_string(n) + " " + what; };
  if (given("--pp") && o.stages != p.depth())
    refuse("--pp", std::to_string(o.stages), number(p.depth(), "stages"));
  if (given("--dp") && o.dp != p.replicas)
    refuse("--dp", std::to_string(o.dp), number(p.replicas, "replicas"));
  if (given("--workers") && f.workers != p.replicas)
    refuse("--workers", std::to_string(f.workers), number(p.replicas, "replicas"));
  if (given("--tp") && o.tp != p.tp)
    refuse("--tp", std::to_string(o.tp), number(p.tp, "tensor-parallel shards per stage"));
  const int ps = static_cast<int>(p.ps_shards.size());
  if (given("--ps") && o.ps != ps)
    refuse("--ps", std::to_string(o.ps), number(ps, "parameter servers"));
  if (given("--microbatches") && o.microbatches != p.microbatches)
    refuse("--microbatches", std::to_string(o.microbatches),
           number(p.microbatches, "micro-batches"));
  if (given("--schedule") && o.schedule != p.schedule)
    refuse("--schedule", f.schedule, "schedule " + std::string{to_string(p.schedule)});
  if (given("--virtual-stages") && o.virtual_stages != p.virtual_stages)
    refuse("--virtual-stages", std::to_string(o.virtual_stages),
           number(p.virtual_stages, "virtual stages"));
  if (given("--ps-mode") && ps > 0 && o.ps_mode != p.ps_mode)
    refuse("--ps-mode", f.ps_mode, "ps mode " + std::string{to_string(p.ps_mode)});
  if (given("--staleness") && ps > 0 && o.staleness != p.staleness)
    refuse("--staleness", std::to_string(o.staleness), "staleness " + std::to_string(p.staleness));
  if (given("--split"))
    refuse("--split", shares_text({o.split.begin(), o.split.end()}), "stage split");
  if (given("--batch-shares") && !same_shares(o.batch_shares, p.batch_shares))
    refuse("--batch-shares", shares_text(o.batch_shares),
           "batch shares " + shares_text(p.batch_shares));
}

void check_mode_flags(const CLI::App& cmd, const training_flags& f) {
  const auto& o = f.opts;
  if (o.plan.is_null() && o.schedule == actors::schedule_kind::interleaved && o.virtual_stages < 2)
    throw runtime::input_error(
        "--schedule interleaved needs --virtual-stages V (model chunks per device, 2 or more); "
        "with one chunk per device use --schedule 1f1b");
  if (cmd.count("--data") == 0) {
    models::model_spec spec;
    try {
      spec = o.model_spec.is_null() ? models::zoo_model(o.model)
                                    : models::model_spec::from_json(o.model_spec);
    } catch (const std::exception&) {
      return; // the planner names a bad model
    }
    if (models::is_sequence_model(spec))
      throw runtime::input_error("--model " + o.model +
                                 " is a character language model: pass --data FILE, a text file "
                                 "(e.g. data/sherlock.txt); the default --data " +
                                 o.data_dir + " is MNIST's");
  }
}

void warn_oversubscription(const training_flags& f, unsigned cores) {
  const auto& o = f.opts;
  int devices = std::max(1, o.stages) * std::max(1, o.dp) * std::max(1, o.tp) + o.ps;
  if (!o.plan.is_null())
    devices = static_cast<int>(actors::plan_from_json(o.plan).devices.size());
  if (cores == 0 || devices <= static_cast<int>(cores))
    return;
  std::fprintf(stderr,
               "warning: %d devices on %u cores: each device gets less than a core; expect "
               "slower steps\n",
               devices, cores);
}

} // namespace troupe::apps
