#pragma once

// Helpers of the actor training tests: run a job in a fresh actor system and
// compare final parameters.

#include <algorithm>
#include <map>
#include <string>

#include <boost/test/unit_test.hpp>
#include <caf/actor_system.hpp>

#include "actors/job.hpp"
#include "runtime/system_config.hpp"

namespace troupe::actors::test {

/// A CI-sized MNIST job: 20 steps on one thread, no evaluation or progress.
inline train_options quick(std::string model = "mlp") {
  train_options o;
  o.model = std::move(model);
  o.data_dir = std::string{TROUPE_SOURCE_DIR} + "/data/mnist";
  o.max_steps = 20;
  o.evaluate = false;
  o.progress = false;
  o.threads = 1;
  return o;
}

/// Runs one training job to its end, as `troupe train` does.
inline job_result train(const train_options& o) {
  runtime::system_config cfg;
  caf::actor_system sys{cfg};
  return run_training(sys, o);
}

/// Largest per-tensor norm-relative difference between two parameter sets.
inline double max_relative_difference(const runtime::named_tensor_list& a,
                                      const runtime::named_tensor_list& b) {
  std::map<std::string, runtime::tensor> by_name(b.begin(), b.end());
  BOOST_REQUIRE_EQUAL(a.size(), b.size());
  double worst = 0;
  for (const auto& [name, t] : a) {
    auto it = by_name.find(name);
    BOOST_REQUIRE_MESSAGE(it != by_name.end(), "missing parameter " << name);
    worst = std::max(worst, runtime::relative_difference(t, it->second));
  }
  return worst;
}

} // namespace troupe::actors::test
