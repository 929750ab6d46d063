#define BOOST_TEST_DYN_LINK
#define BOOST_TEST_MODULE actors_tp_training
#include <boost/test/unit_test.hpp>

// Tensor parallelism through actors (`troupe train --tp T`): every stage's
// split layers on T layer shards, all-reducing through collective rank
// actors, against unsplit training on the same data and seed; composed with
// pipelines and data parallelism; clipping and checkpoints over the slices;
// a failing shard; impossible splits refused.

#include <chrono>
#include <filesystem>

#include <nlohmann/json.hpp>
#include <unistd.h>

#include "actors/cluster/job.hpp"
#include "actors/plan/plan.hpp"
#include "runtime/error.hpp"
#include "test_util.hpp"

using namespace troupe;
using actors::test::max_relative_difference;
using actors::test::order_insensitive;
using actors::test::quick;
using actors::test::train;
namespace fs = std::filesystem;

namespace {

/// The character language model, SGD: the key projection's bias gets a
/// gradient that is zero in exact arithmetic (softmax ignores a shift of all
/// scores), so under Adam the rounding noise of another summation order
/// becomes a full-size step and that one tensor's difference says nothing
/// about the split (models_tensor_parallel_test bounds it separately).
actors::train_options quick_lm() {
  auto o = quick("transformer");
  o.data_dir = std::string{TROUPE_SOURCE_DIR} + "/data/sherlock.txt";
  o.optimizer = "sgd";
  o.momentum = 0.9f;
  o.lr = 0.05f;
  o.batch = 8;
  return o;
}

} // namespace

BOOST_AUTO_TEST_CASE(mlp_tp2_equals_unsplit) {
  // The check for the MLP: T = 2 (784-1024 column, 1024-512 row,
  // 512-10 replicated), 20 steps, per-tensor norm-relative < 1e-5. The row
  // layer adds its ranks' partial products: another summation order, hence
  // order_insensitive.
  auto o = order_insensitive(quick());
  o.batch = 64;
  auto reference = train(o);
  o.tp = 2;
  auto run = train(o);
  BOOST_TEST(run.report.at("strategy") == "tensor-parallel");
  BOOST_TEST(run.report.at("tp") == 2);
  const auto diff = max_relative_difference(run.params, reference.params);
  BOOST_TEST_MESSAGE("mlp tp2: max relative difference " << diff);
  BOOST_TEST(diff < 1e-5);
  BOOST_TEST(std::abs(run.report.at("final_loss").get<double>() -
                      reference.report.at("final_loss").get<double>()) < 1e-5);
}

BOOST_AUTO_TEST_CASE(transformer_tp2_and_tp4_equal_unsplit) {
  // Heads and MLP blocks split 2 and 4 ways (4 heads: one each at T = 4).
  auto o = quick_lm();
  auto reference = train(o);
  for (int tp : {2, 4}) {
    o.tp = tp;
    auto run = train(o);
    const auto diff = max_relative_difference(run.params, reference.params);
    BOOST_TEST_MESSAGE("transformer tp" << tp << ": max relative difference " << diff);
    BOOST_TEST(diff < 1e-5);
    BOOST_TEST(std::abs(run.report.at("final_loss").get<double>() -
                        reference.report.at("final_loss").get<double>()) < 1e-5);
  }
}

BOOST_AUTO_TEST_CASE(uneven_split_equals_unsplit) {
  // 4 heads and 256 hidden units over 3 shards: 2/1/1 heads, 86/85/85 units.
  auto o = quick_lm();
  o.max_steps = 8;
  auto reference = train(o);
  o.tp = 3;
  auto run = train(o);
  BOOST_TEST(max_relative_difference(run.params, reference.params) < 1e-5);
}

BOOST_AUTO_TEST_CASE(tp2_pp2_and_tp2_dp2_equal_unsplit) {
  // Hybrid plans: a 2-stage pipeline of 2 tensor-parallel shards each
  // (1F1B, 4 micro-batches), and 2 replicas of 2 shards (replicas checked
  // bitwise every step), against one device (order_insensitive: the row
  // layer's partial sums).
  auto o = order_insensitive(quick());
  o.batch = 64;
  auto reference = train(o);
  {
    auto h = o;
    h.tp = 2;
    h.stages = 2;
    h.microbatches = 4;
    h.schedule = actors::schedule_kind::one_f_one_b;
    auto run = train(h);
    BOOST_TEST(run.report.at("strategy") == "pipeline+tensor-parallel");
    BOOST_TEST(max_relative_difference(run.params, reference.params) < 1e-5);
  }
  {
    auto h = o;
    h.tp = 2;
    h.dp = 2;
    h.check_replicas = 1;
    auto run = train(h);
    BOOST_TEST(run.report.at("strategy") == "data-parallel+tensor-parallel");
    BOOST_TEST(run.report.at("replica_checks") == 20);
    BOOST_TEST(max_relative_difference(run.params, reference.params) < 1e-5);
  }
  {
    auto h = quick_lm();
    auto lm_reference = train(h);
    h.tp = 2;
    h.stages = 2;
    h.microbatches = 2;
    auto run = train(h);
    BOOST_TEST(max_relative_difference(run.params, lm_reference.params) < 1e-5);
  }
}

BOOST_AUTO_TEST_CASE(clipping_counts_replicated_parameters_once) {
  // The global norm over the slices (replicated parameters on rank 0 only)
  // equals the unsplit model's, so clipping changes nothing.
  auto o = order_insensitive(quick());
  o.batch = 64;
  o.clip_norm = 0.5;
  auto reference = train(o);
  o.tp = 2;
  auto run = train(o);
  const double g0 = reference.report.at("grad_norm").get<double>();
  const double g1 = run.report.at("grad_norm").get<double>();
  BOOST_TEST(std::abs(g1 - g0) / g0 < 1e-5);
  BOOST_TEST(max_relative_difference(run.params, reference.params) < 1e-5);
}

BOOST_AUTO_TEST_CASE(checkpoint_of_slices_resumes_unsplit_and_split) {
  // A tp2 checkpoint holds whole tensors: it resumes unsplit and split alike,
  // and both continue as an uninterrupted run.
  auto dir = fs::temp_directory_path() / ("troupe-tp-ckpt-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  auto o = order_insensitive(quick());
  o.batch = 64;
  o.max_steps = 10;
  auto straight = o;
  straight.max_steps = 20;
  auto reference = train(straight);
  auto first = o;
  first.tp = 2;
  first.checkpoint_dir = dir.string();
  train(first);
  for (int tp : {1, 2}) {
    auto second = straight;
    second.tp = tp;
    second.resume_dir = dir.string();
    auto run = train(second);
    BOOST_TEST(max_relative_difference(run.params, reference.params) < 1e-5);
  }
  fs::remove_all(dir);
}

BOOST_AUTO_TEST_CASE(failing_shard_fails_the_job) {
  // Stage 0's rank 0 throws in step 3: its peer, waiting in an all-reduce,
  // is released by the job's teardown; the job fails at once naming it.
  auto o = quick();
  o.tp = 2;
  o.fault = "stage=0,step=3";
  o.max_restarts = 0; // the failure path itself (recovery is tested in recovery_test)
  const auto t0 = std::chrono::steady_clock::now();
  try {
    train(o);
    BOOST_FAIL("the job should fail");
  } catch (const std::exception& e) {
    const std::string what = e.what();
    BOOST_TEST_MESSAGE(what);
    BOOST_TEST(what.find("injected fault") != std::string::npos);
    BOOST_TEST(what.find("tp rank 0") != std::string::npos);
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  BOOST_TEST(seconds < 10.0);
}

BOOST_AUTO_TEST_CASE(impossible_splits_are_refused) {
  auto o = quick_lm();
  o.tp = 5; // 4 heads
  try {
    (void)actors::make_plan(o, 8u);
    BOOST_FAIL("tp 5 of 4 heads should be refused");
  } catch (const runtime::input_error& e) {
    BOOST_TEST_MESSAGE(e.what());
    BOOST_TEST(std::string{e.what()}.find("--tp 5") != std::string::npos);
    BOOST_TEST(std::string{e.what()}.find("heads") != std::string::npos);
  }
  auto m = quick();
  m.tp = 0;
  BOOST_CHECK_THROW(m.validate(), runtime::input_error);
  m.tp = 2;
  m.ps = 1;
  BOOST_CHECK_THROW(m.validate(), runtime::input_error); // --ps with --tp
}
