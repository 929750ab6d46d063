#include "apps/troupe/bench/bench_train_job.hpp"

#include <exception>
#include <fstream>
#include <future>
#include <stdexcept>
#include <utility>
#include <vector>

#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>

#include "actors/cluster/job.hpp"
#include "actors/pipeline/device_actor.hpp"
#include "actors/plan/step_timeline.hpp"
#include "actors/protocol/messages.hpp"
#include "apps/troupe/bench/bench_job.hpp"
#include "kernels/cpu/gemm.hpp"
#include "models/layers/sequential.hpp"
#include "models/zoo.hpp"
#include "runtime/io/safetensors.hpp"

namespace troupe::apps::train_bench {

float default_lr(const std::string& optimizer) {
  return optimizer == "sgd" ? 0.01f : 1e-3f;
}

void write_initial_params(const std::string& model, std::uint64_t seed,
                          const std::filesystem::path& file) {
  auto spec = models::zoo_model(model);
  models::sequential net{models::instantiate(spec, 0, spec.layers.size(), seed)};
  std::vector<std::pair<std::string, runtime::tensor>> params;
  for (auto* p : net.parameters())
    params.emplace_back(p->name, p->value);
  runtime::write_safetensors(file, params, {{"source", "troupe bench train"}});
}

double device_gemm_gflops(caf::actor_system& sys, int threads, kernels::cpu::gemm_backend gemm) {
  auto dev = actors::spawn_device(sys, {"cpu:bench", runtime::device::cpu(), threads, gemm});
  caf::scoped_actor self{sys};
  double gflops = 0;
  self->request(dev, caf::infinite, actors::measure_atom::value)
      .receive([&](double g) { gflops = g; },
               [&](caf::error& err) {
                 throw std::runtime_error("GEMM measurement: " + sys.render(err));
               });
  self->send_exit(dev, caf::exit_reason::user_shutdown);
  return gflops;
}

troupe_run run_troupe(caf::actor_system& sys, const bench_flags& f, int dp, int threads,
                      const std::string& trace_file) {
  auto o = timed_job_options(f.warmup, f.steps);
  o.model = f.model;
  o.data_dir = f.data_dir;
  o.batch = f.batch;
  o.optimizer = f.optimizer;
  o.gemm = f.gemm;
  o.lr = f.lr;
  o.seed = f.seed;
  o.threads = threads;
  // Every replica on a core of its own, as the independent processes are.
  o.pin_cores = f.pin_cores;
  o.stages = 1;
  o.dp = dp;
  o.bucket_bytes = static_cast<std::int64_t>(f.bucket_mb * 1024.0 * 1024.0);
  o.allreduce = f.allreduce;
  o.trace_file = trace_file;
  auto r = actors::run_training(sys, o).report;
  // A build that accepts --dp but plans fewer replicas would be measured as
  // something it is not.
  auto replicas = r.at("plan").value("replicas", 1);
  if (replicas != dp)
    throw std::runtime_error("troupe planned " + std::to_string(replicas) + " replica(s) for dp " +
                             std::to_string(dp) +
                             " (data parallelism not available in this build?)");
  troupe_run t;
  const auto [steps, secs] = timed_figures_of(r, "troupe job ran no timed steps");
  t.steps_per_second = steps / secs;
  t.step_ms = 1e3 * secs / steps;
  t.compute_ms = 1e3 * r.at("timed_device_compute_seconds").get<double>() / steps;
  return t;
}

traced_run run_traced(caf::actor_system& sys, const bench_flags& f,
                      const std::filesystem::path& trace_file) {
  traced_run t;
  t.run = run_troupe(sys, f, 1, f.threads, trace_file.string());
  std::ifstream in(trace_file);
  if (!in)
    throw std::runtime_error("no trace at " + trace_file.string());
  std::vector<actors::time_breakdown> steps;
  for (const auto& s : actors::step_timelines(nlohmann::json::parse(in)))
    if (s.step >= f.warmup && s.stages.size() == 1)
      steps.push_back(actors::stage_breakdown(s, 0));
  if (steps.empty())
    throw std::runtime_error("the traced run's trace holds no timed step");
  t.breakdown = actors::mean_breakdown(steps);
  return t;
}

traced_dp_run run_traced_dp(caf::actor_system& sys, const bench_flags& f, int dp, int threads,
                            const std::filesystem::path& trace_file) {
  traced_dp_run t;
  t.run = run_troupe(sys, f, dp, threads, trace_file.string());
  std::ifstream in(trace_file);
  if (!in)
    throw std::runtime_error("no trace at " + trace_file.string());
  std::vector<std::vector<actors::time_breakdown>> steps(static_cast<std::size_t>(dp));
  for (const auto& s : actors::step_timelines(nlohmann::json::parse(in))) {
    if (s.step < f.warmup || s.stages.size() != steps.size())
      continue;
    for (std::size_t k = 0; k < steps.size(); ++k)
      steps[k].push_back(actors::stage_breakdown(s, k));
  }
  for (const auto& r : steps) {
    if (r.empty())
      throw std::runtime_error("the traced dp run's trace holds no timed step");
    t.replicas.push_back(actors::mean_breakdown(r));
  }
  return t;
}

gemm_limit measure_gemm_limit(caf::actor_system& sys, const bench_flags& f) {
  gemm_limit g;
  g.gemms = models::training_gemms(models::zoo_model(f.model), f.batch);
  g.threads = f.threads;
  if (g.gemms.calls.empty())
    return g;
  // On a device actor's thread, as the step's GEMMs run.
  auto dev =
      actors::spawn_device(sys, {"cpu:gemm-limit", runtime::device::cpu(), f.threads, f.gemm});
  std::promise<std::vector<double>> seconds;
  auto done = seconds.get_future();
  caf::anon_send(dev, actors::device_task{[&seconds, &g] {
                   try {
                     seconds.set_value(models::time_gemms(g.gemms.calls, 15));
                   } catch (...) {
                     seconds.set_exception(std::current_exception());
                   }
                 }});
  for (double s : done.get())
    g.pass_seconds += s;
  caf::anon_send_exit(dev, caf::exit_reason::user_shutdown);
  return g;
}

nlohmann::json run_json(const bench_flags& f) {
  return {{"model", f.model},   {"batch", f.batch},    {"optimizer", f.optimizer},
          {"lr", f.lr},         {"seed", f.seed},      {"steps", f.steps},
          {"warmup", f.warmup}, {"repeats", f.repeats}};
}

} // namespace troupe::apps::train_bench
