#include "apps/troupe/bench/bench_train_job.hpp"

#include <stdexcept>
#include <utility>
#include <vector>

#include <caf/scoped_actor.hpp>

#include "actors/cluster/job.hpp"
#include "actors/pipeline/device_actor.hpp"
#include "apps/troupe/bench/bench_job.hpp"
#include "kernels/cpu/gemm.hpp"
#include "models/layers/sequential.hpp"
#include "models/zoo.hpp"
#include "runtime/io/safetensors.hpp"
#include "actors/protocol/messages.hpp"

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

double device_gemm_gflops(caf::actor_system& sys, int threads) {
  auto dev = actors::spawn_device(sys, {"cpu:bench", runtime::device::cpu(), threads});
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

troupe_run run_troupe(caf::actor_system& sys, const bench_flags& f, int dp, int threads) {
  auto o = timed_job_options(f.warmup, f.steps);
  o.model = f.model;
  o.data_dir = f.data_dir;
  o.batch = f.batch;
  o.optimizer = f.optimizer;
  o.lr = f.lr;
  o.seed = f.seed;
  o.threads = threads;
  o.stages = 1;
  o.dp = dp;
  o.bucket_bytes = static_cast<std::int64_t>(f.bucket_mb * 1024.0 * 1024.0);
  o.allreduce = f.allreduce;
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

nlohmann::json run_json(const bench_flags& f) {
  return {{"model", f.model},   {"batch", f.batch},    {"optimizer", f.optimizer},
          {"lr", f.lr},         {"seed", f.seed},      {"steps", f.steps},
          {"warmup", f.warmup}, {"repeats", f.repeats}};
}

std::string troupe_blas(int threads) {
  // Described with this thread's BLAS thread count set as a device actor sets its own.
  kernels::cpu::set_blas_threads_for_this_thread(threads);
  return kernels::cpu::blas_description();
}

} // namespace troupe::apps::train_bench
