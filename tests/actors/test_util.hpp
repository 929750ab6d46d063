#pragma once

// Helpers of the actor training tests: run a job in a fresh actor system and
// compare final parameters.

#include <algorithm>
#include <map>
#include <string>

#include <boost/test/unit_test.hpp>
#include <caf/actor_system.hpp>

#include "actors/cluster/job.hpp"
#include "actors/protocol/system_config.hpp"

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
  actors::system_config cfg;
  caf::actor_system sys{cfg};
  return run_training(sys, o);
}

/// Two runs that add the same gradients in another order (the full batch
/// against micro-batches, an all-reduce over 3 or more replicas or a tree,
/// tensor-parallel partial sums, uneven batch shares) differ by float
/// rounding. Under Adam that rounding does not stay small: a gradient that
/// is zero up to rounding gets a full-size step at step 1, and a ReLU input
/// within rounding of 0 later flips, after which the runs drift apart
/// (measured, the full batch of 64 against 4 micro-batches: 2.7e-4 after 20
/// steps and 1.4e-2 after 100 on OpenBLAS's Cooperlake kernels; on Haswell
/// and SkylakeX kernels the same pairs flip at other steps or seeds). So
/// such comparisons use SGD with momentum, under which the same pairs stay
/// at the noise floor of the summation order: 0.8e-7 to 2.5e-7 after 20
/// steps on the Haswell, SkylakeX and Cooperlake kernels (docs/architecture.md,
/// "Which results are bitwise"). Their bound, 1e-5, is 40 times that floor;
/// a lost or doubled contribution moves the parameters by 1e-3 or more.
/// Runs whose sums are formed in the same order are compared bitwise.
inline train_options order_insensitive(train_options o) {
  o.optimizer = "sgd";
  o.momentum = 0.9f;
  o.lr = 0.05f;
  return o;
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

/// Every tensor bitwise equal.
inline bool bitwise_equal(const runtime::named_tensor_list& a,
                          const runtime::named_tensor_list& b) {
  return max_relative_difference(a, b) == 0.0;
}

} // namespace troupe::actors::test
