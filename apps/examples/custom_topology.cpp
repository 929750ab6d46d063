// A custom topology through the library: plan a 2-stage pipeline whose
// stages are each split over 2 tensor-parallel shards (4 layer shards on 4
// local devices), move its layer boundary by hand, show the plan and train it
// for a few steps on MNIST. A plan is plain data: anything make_plan gives can be
// edited (or built from scratch) and run. Usage: custom_topology [MNIST_DIR]

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <string>

#include <caf/actor_system.hpp>

#include "actors/cluster/job.hpp"
#include "actors/plan/plan.hpp"
#include "actors/plan/plan_memory.hpp"
#include "actors/protocol/system_config.hpp"

using namespace troupe;

int main(int argc, char** argv) try {
  actors::train_options opts;
  opts.model = "mlp"; // dense relu dense relu dense
  opts.data_dir = argc > 1 ? argv[1] : "data/mnist";
  opts.stages = 2;
  opts.tp = 2;
  opts.microbatches = 2;
  opts.schedule = actors::schedule_kind::one_f_one_b;
  opts.max_steps = 3;
  opts.evaluate = false;
  opts.progress = false;
  opts.threads = 2;

  // The planner's split (by FLOPs: the first dense layer alone), then ours:
  // stage 0 takes the first dense layer and its relu, stage 1 the rest.
  actors::plan p = actors::make_plan(opts, 2);
  for (auto& slot : p.stages) // every replica and tensor-parallel rank of a stage
    (slot.stage == 0 ? slot.chunks[0].end : slot.chunks[0].begin) = 2;
  p.partition = "explicit";
  std::printf("%s", actors::describe(p, actors::memory_assumptions::of(opts)).c_str());
  std::fflush(stdout);

  actors::system_config cfg;
  caf::actor_system sys{cfg};
  auto result = actors::run_training(sys, opts, p);
  const double loss = result.report.at("final_loss").get<double>();
  std::printf("%s: %lld steps, final loss %.4f\n",
              result.report.at("strategy").get<std::string>().c_str(),
              static_cast<long long>(result.report.at("steps").get<std::int64_t>()), loss);
  return std::isfinite(loss) ? 0 : 1;
} catch (const std::exception& e) {
  std::fprintf(stderr, "error: %s\n", e.what());
  return 2;
}
