#define BOOST_TEST_DYN_LINK
#define BOOST_TEST_MODULE actors_dp_training
#include <boost/test/unit_test.hpp>

// Data parallelism through actors (`troupe train --dp N`): replicas against
// single-replica training on the same global batch and seed, bitwise
// agreement of the replicas, reproducibility, uneven batch shares, the
// composition with pipelines, gradient buckets overlapping backward, and a
// replica that fails.

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>

#include <nlohmann/json.hpp>
#include <unistd.h>

#include "actors/cluster/job.hpp"
#include "actors/pipeline/data_loader.hpp"
#include "actors/plan/schedule.hpp"
#include "runtime/error.hpp"
#include "test_util.hpp"

using namespace troupe;
using actors::test::bitwise_equal;
using actors::test::max_relative_difference;
using actors::test::order_insensitive;
using actors::test::train;
namespace fs = std::filesystem;

namespace {

/// A quick job (test_util.hpp) whose replicas must agree to the bit after
/// every step.
actors::train_options quick(std::string model = "mlp") {
  auto o = actors::test::quick(std::move(model));
  o.batch = 64;
  o.check_replicas = 1;
  return o;
}

/// `o` run on plan `p` as it is, and with replica 0's stage 0 moved onto the
/// device of replica 1's stage 1 (its group then all-reduces through its
/// collective ranks: a device thread waiting in the in-process shared
/// reduction would block the other shard on that device).
std::pair<actors::job_result, actors::job_result>
own_and_shared_devices(const actors::train_options& o, actors::plan p) {
  auto run_plan = [&](const actors::plan& q) {
    actors::system_config cfg;
    caf::actor_system sys{cfg};
    return actors::run_training(sys, o, q);
  };
  auto own = run_plan(p);
  const auto& g = p.grid();
  p.stages[g.index({0, 0, 0})].device = p.stages[g.index({1, 1, 0})].device;
  return {std::move(own), run_plan(p)};
}

} // namespace

BOOST_AUTO_TEST_CASE(split_by_shares_is_exact) {
  using actors::split_by_shares;
  BOOST_TEST((split_by_shares(10, {0.5, 0.5}) == std::vector<std::int64_t>{5, 5}));
  BOOST_TEST(
      (split_by_shares(7, {0.25, 0.25, 0.25, 0.25}) == std::vector<std::int64_t>{2, 2, 2, 1}));
  BOOST_TEST((split_by_shares(64, {0.75, 0.25}) == std::vector<std::int64_t>{48, 16}));
  BOOST_TEST(
      (split_by_shares(2, {0.25, 0.25, 0.25, 0.25}) == std::vector<std::int64_t>{1, 1, 0, 0}));
  for (std::int64_t n : {0, 1, 5, 97, 1000}) {
    auto c = split_by_shares(n, {0.1, 0.2, 0.3, 0.4});
    BOOST_TEST(std::accumulate(c.begin(), c.end(), std::int64_t{0}) == n);
  }
}

BOOST_AUTO_TEST_CASE(replicas_load_disjoint_parts_of_each_batch) {
  // Each replica's loader builds only its part: together the parts are the
  // global batch, in order, with offsets into it.
  auto samples = runtime::tensor::empty(runtime::dtype::u8, {10, 2});
  auto labels = runtime::tensor::empty(runtime::dtype::u8, {10});
  for (int i = 0; i < 10; ++i) {
    samples.mutable_data<std::uint8_t>()[2 * i] = static_cast<std::uint8_t>(i);
    samples.mutable_data<std::uint8_t>()[2 * i + 1] = 0;
    labels.mutable_data<std::uint8_t>()[i] = static_cast<std::uint8_t>(i);
  }
  actors::loader_config cfg;
  cfg.data = actors::memory_dataset("ramp", samples, labels);
  cfg.sample_shape = {2};
  cfg.batch = 7;
  cfg.parts = 2;
  cfg.shares = {0.5, 0.25, 0.25};
  std::vector<std::int32_t> order(10);
  std::iota(order.begin(), order.end(), 0);
  std::vector<std::int32_t> seen;
  std::vector<std::int64_t> offsets;
  for (int r = 0; r < 3; ++r) {
    cfg.replica = r;
    auto b = actors::make_batch(cfg, order, 0, 0);
    BOOST_TEST(b.size == 7); // the global batch
    for (std::size_t p = 0; p < b.labels.size(); ++p) {
      offsets.push_back(b.offsets[p]);
      for (std::int64_t i = 0; i < b.labels[p].numel(); ++i)
        seen.push_back(b.labels[p].data<std::int32_t>()[i]);
    }
  }
  BOOST_TEST((seen == std::vector<std::int32_t>{0, 1, 2, 3, 4, 5, 6}));
  // shares of 7: 3.5, 1.75, 1.75 -> 3, 2, 2 (largest remainders) -> parts
  // [2, 1], [1, 1], [1, 1]
  BOOST_TEST((offsets == std::vector<std::int64_t>{0, 2, 3, 4, 5, 6}));
}

BOOST_AUTO_TEST_CASE(dp2_equals_one_replica_with_two_micro_batches_bitwise) {
  // Like with like: one replica that takes the batch as the same two
  // halves, one after the other, forms the same two partial gradients and
  // adds them as the all-reduce does (a + b == b + a), so under Adam the
  // parameters are bitwise equal, on every CPU and BLAS kernel.
  auto o = quick();
  o.check_replicas = 0;
  o.microbatches = 2;
  auto reference = train(o);
  o.microbatches = 1;
  o.dp = 2;
  o.check_replicas = 1;
  for (const char* algo : {"ring", "tree"}) {
    o.allreduce = algo;
    auto run = train(o);
    BOOST_TEST(run.report.at("strategy") == "data-parallel");
    BOOST_TEST(run.report.at("replica_checks") == 20);
    BOOST_TEST(bitwise_equal(run.params, reference.params), algo);
    BOOST_TEST(run.report.at("final_loss").get<double>() ==
               reference.report.at("final_loss").get<double>());
  }
}

BOOST_AUTO_TEST_CASE(dp2_and_dp4_equal_one_replica) {
  // The check: --dp 2 and --dp 4 against one replica on the same
  // global batch and seed after 20 steps, per-tensor norm-relative
  // difference < 1e-5 (only the order of the gradient sums differs, hence
  // order_insensitive), with the replicas bitwise identical after every
  // step (--check-replicas 1).
  auto o = order_insensitive(quick());
  o.check_replicas = 0;
  auto reference = train(o);
  o.check_replicas = 1;
  for (int dp : {2, 4}) {
    o.dp = dp;
    for (const char* algo : {"ring", "tree"}) {
      o.allreduce = algo;
      auto run = train(o);
      BOOST_TEST(run.report.at("strategy") == "data-parallel");
      BOOST_TEST(run.report.at("replicas") == dp);
      BOOST_TEST(run.report.at("replica_checks") == 20);
      const auto diff = max_relative_difference(run.params, reference.params);
      BOOST_TEST_MESSAGE("dp " << dp << " " << algo << ": max relative difference " << diff);
      BOOST_TEST(diff < 1e-5);
      BOOST_TEST(std::abs(run.report.at("final_loss").get<double>() -
                          reference.report.at("final_loss").get<double>()) < 1e-4);
    }
  }
}

BOOST_AUTO_TEST_CASE(check_replicas_compares_every_shard_every_step) {
  // --check-replicas 1 over dp 3 x pp 2: each step compares replicas 1 and
  // 2 with replica 0 on both stages, 20 steps: 80 comparisons of digests
  // that were really sent (a missing digest fails the job).
  auto o = quick();
  o.dp = 3;
  o.stages = 2;
  o.microbatches = 2;
  auto run = train(o);
  BOOST_TEST(run.report.at("replica_checks") == 20);
  BOOST_TEST(run.report.at("replica_digest_comparisons") == 20 * 2 * 2);
}

BOOST_AUTO_TEST_CASE(a_perturbed_replica_fails_the_check_naming_it) {
  // The test-only fault hook nudges one parameter of replica 1's stage 1
  // after step 4's update: --check-replicas 1 fails the job at that step,
  // naming the replica and the stage; with checks every 3 steps, at step 5.
  for (int every : {1, 3}) {
    auto o = quick();
    o.dp = 3;
    o.stages = 2;
    o.microbatches = 2;
    o.check_replicas = every;
    o.fault = "perturb:stage=1,step=4,replica=1";
    o.max_restarts = 0; // the failure path itself (recovery is tested in recovery_test)
    try {
      train(o);
      BOOST_FAIL("the perturbed replica went unnoticed");
    } catch (const std::exception& e) {
      const std::string what = e.what();
      BOOST_TEST_MESSAGE(what);
      BOOST_TEST(what.find("replica 1 stage 1 diverged from replica 0") != std::string::npos, what);
      BOOST_TEST(what.find(every == 1 ? "after step 4" : "after step 5") != std::string::npos,
                 what);
    }
  }
}

BOOST_AUTO_TEST_CASE(two_identical_runs_are_bitwise_identical) {
  auto o = quick();
  o.dp = 3;                  // 64 samples: 22, 21, 21
  o.bucket_bytes = 64 << 10; // several buckets, launched during backward
  auto a = train(o);
  auto b = train(o);
  BOOST_TEST(bitwise_equal(a.params, b.params));
  BOOST_TEST(a.report.at("final_loss").get<double>() == b.report.at("final_loss").get<double>());
}

BOOST_AUTO_TEST_CASE(uneven_shares_keep_the_gradient_exact) {
  // A replica three times as fast takes three quarters of every batch; the
  // gradient is still the global batch's mean (each replica's gradient is
  // scaled by 1 / global batch, not by its own share).
  auto o = order_insensitive(quick());
  o.check_replicas = 0;
  auto reference = train(o);
  o.dp = 2;
  o.batch_shares = {3, 1};
  o.check_replicas = 1;
  auto run = train(o);
  BOOST_TEST(max_relative_difference(run.params, reference.params) < 1e-5);
  BOOST_TEST(run.report.at("plan").at("batch_shares").at(0).get<double>() == 0.75);
}

BOOST_AUTO_TEST_CASE(pipelines_compose_with_data_parallelism) {
  // --pp 2 --dp 2 (1F1B, 4 micro-batches per replica) against the same
  // pipeline without replicas (micro-batches of 16 rows against 2 x 8:
  // another summation order); clipping uses the all-reduced gradient.
  auto o = order_insensitive(quick());
  o.stages = 2;
  o.microbatches = 4;
  o.schedule = actors::schedule_kind::one_f_one_b;
  o.clip_norm = 1.0;
  o.check_replicas = 0;
  auto reference = train(o);
  o.dp = 2;
  o.check_replicas = 1;
  auto run = train(o);
  BOOST_TEST(run.report.at("strategy") == "pipeline+data-parallel");
  BOOST_TEST(run.report.at("replica_checks") == 20);
  BOOST_TEST(max_relative_difference(run.params, reference.params) < 1e-5);
  BOOST_TEST(std::abs(run.report.at("grad_norm").get<double>() -
                      reference.report.at("grad_norm").get<double>()) <
             1e-5 * reference.report.at("grad_norm").get<double>());
}

BOOST_AUTO_TEST_CASE(replicas_sharing_a_device_with_another_shard_do_not_block_it) {
  // A plan edited by hand: replica 0's stage 0 runs on the device of replica
  // 1's stage 1. A device thread waiting in the in-process shared reduction
  // would block replica 1's stage 1, whose gradient replica 1's stage 0 needs
  // before it brings its bucket: the group must use its collective ranks.
  auto o = quick();
  o.stages = 2;
  o.dp = 2;
  o.microbatches = 2;
  o.max_restarts = 0;      // a stall ends the job instead of re-planning it
  o.stall_timeout_s = 5.0; // and is reported well before ctest's timeout
  const auto [own, shared] =
      own_and_shared_devices(o, actors::make_plan(o, actors::local_devices(o, 4)));
  BOOST_TEST(shared.report.at("steps").get<int>() == 20);
  BOOST_TEST(bitwise_equal(shared.params, own.params));
}

BOOST_AUTO_TEST_CASE(plain_sgd_replicas_in_one_process_update_one_copy_in_the_reduction) {
  // Plain SGD, every replica in this process: the update is made as the
  // shared reduction sums each slice, into one parameter copy the replicas
  // share, and no optimizer pass follows. The same job with a replica's
  // device shared by another shard all-reduces through the collective
  // ranks and runs the optimizer pass: the parameters are bitwise equal.
  auto o = quick();
  o.optimizer = "sgd";
  o.lr = 0.05f;
  o.stages = 2;
  o.dp = 2;
  o.microbatches = 2;
  o.check_replicas = 0;
  const auto [fused, ranks] =
      own_and_shared_devices(o, actors::make_plan(o, actors::local_devices(o, 4)));
  BOOST_TEST(bitwise_equal(fused.params, ranks.params));
  for (const auto& s : fused.report.at("stages")) {
    BOOST_TEST(s.at("updates_in_reduction") == 20, s.dump());
    BOOST_TEST(s.at("allreduce_buckets") == 20, s.dump()); // counted though no sum comes back
  }
  for (const auto& s : ranks.report.at("stages"))
    BOOST_TEST(s.at("updates_in_reduction") == 0, s.dump());
  // --check-replicas asks whether the replicas' updates agree: each keeps
  // its copy and its optimizer pass, and they agree after every step.
  o.check_replicas = 1;
  const auto checked = train(o);
  BOOST_TEST(checked.report.at("replica_checks") == 20);
  BOOST_TEST(bitwise_equal(checked.params, fused.params));
  for (const auto& s : checked.report.at("stages"))
    BOOST_TEST(s.at("updates_in_reduction") == 0, s.dump());
  // With momentum the update keeps its optimizer pass.
  o.momentum = 0.9f;
  for (const auto& s : train(o).report.at("stages"))
    BOOST_TEST(s.at("updates_in_reduction") == 0, s.dump());
}

BOOST_AUTO_TEST_CASE(zero_bubble_pipelines_compose_with_data_parallelism) {
  // --pp 2 --dp 2 with clipping: zb1 and zbv against 1f1b with the same
  // replicas, and against one replica (the suite's 1e-5: another summation
  // order, as in pipelines_compose_with_data_parallelism). Each replica's
  // gradients are bitwise 1f1b's (B's and W's in micro-batch order); the
  // all-reduce must start only after each chunk's last W, or it reduces
  // partial sums. zb1 holds the same layers on the same shards: bitwise.
  // zbv puts other layers on each shard, so the global norm for clipping
  // sums the per-shard squares in another grouping (last bits): 1e-5.
  auto o = order_insensitive(quick());
  o.stages = 2;
  o.microbatches = 4;
  o.schedule = actors::schedule_kind::one_f_one_b;
  o.clip_norm = 1.0;
  o.check_replicas = 0;
  auto one_replica = train(o);
  o.dp = 2;
  o.check_replicas = 1;
  auto reference = train(o);
  o.schedule = actors::schedule_kind::zb1;
  auto zb1 = train(o);
  BOOST_TEST(zb1.report.at("replica_checks") == 20);
  BOOST_TEST(bitwise_equal(zb1.params, reference.params));
  BOOST_TEST(max_relative_difference(zb1.params, one_replica.params) < 1e-5);
  o.schedule = actors::schedule_kind::zbv;
  o.virtual_stages = 2;
  auto zbv = train(o);
  BOOST_TEST(zbv.report.at("replica_checks") == 20);
  BOOST_TEST(max_relative_difference(zbv.params, reference.params) < 1e-5);
  BOOST_TEST(max_relative_difference(zbv.params, one_replica.params) < 1e-5);
}

BOOST_AUTO_TEST_CASE(transformer_dp2_equals_one_replica) {
  // SGD: the key projection's bias has a gradient that is zero in exact
  // arithmetic (softmax ignores a shift of all scores), so under Adam,
  // which divides by the gradient's running magnitude, the rounding noise of
  // a different summation order becomes a full-size step and the relative
  // difference of that one tensor says nothing about data parallelism.
  auto o = quick("transformer");
  o.optimizer = "sgd";
  o.lr = 0.05f;
  o.data_dir = std::string{TROUPE_SOURCE_DIR} + "/data/sherlock.txt";
  o.max_steps = 6;
  o.batch = 8;
  o.check_replicas = 0;
  auto reference = train(o);
  o.dp = 2;
  o.check_replicas = 1;
  o.bucket_bytes = 256 << 10;
  auto run = train(o);
  BOOST_TEST(max_relative_difference(run.params, reference.params) < 1e-5);
}

BOOST_AUTO_TEST_CASE(first_bucket_all_reduce_starts_before_backward_ends) {
  // Small buckets: in every step the device hands the first bucket over
  // ("bucket ready") while its last backward is still running, and the
  // all-reduce spans show communication overlapping backward. Whether a
  // given all-reduce starts before backward ends also depends on the OS
  // scheduling the collective actors while both device threads keep the two
  // cores busy, so that part is required of some steps, not of all.
  auto dir = fs::temp_directory_path() / ("troupe-dp-trace-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  auto o = quick();
  o.dp = 2;
  o.max_steps = 3;
  o.bucket_bytes = 16 << 10;
  o.trace_file = (dir / "t.json").string();
  auto run = train(o);
  std::ifstream in{o.trace_file};
  auto trace = nlohmann::json::parse(in);
  // Per (track, step): when the last backward ended and the first all-reduce began.
  std::map<std::pair<std::int64_t, std::int64_t>, double> backward_end, first_allreduce,
      first_ready;
  for (const auto& e : trace.at("traceEvents")) {
    if (!e.contains("args") || !e.at("args").contains("step"))
      continue;
    auto k = std::make_pair(e.at("tid").get<std::int64_t>(),
                            e.at("args").at("step").get<std::int64_t>());
    const double ts = e.at("ts").get<double>();
    if (e.at("name") == "bucket ready")
      first_ready[k] = first_ready.count(k) ? std::min(first_ready[k], ts) : ts;
    if (e.value("ph", "") != "X")
      continue;
    if (e.at("name") == "backward")
      backward_end[k] = std::max(backward_end[k], ts + e.at("dur").get<double>());
    if (e.at("name") == "allreduce")
      first_allreduce[k] = first_allreduce.count(k) ? std::min(first_allreduce[k], ts) : ts;
  }
  BOOST_TEST_REQUIRE(!first_allreduce.empty());
  int overlapped = 0;
  for (const auto& [k, t] : first_allreduce) {
    const bool before = backward_end.count(k) && t < backward_end.at(k);
    BOOST_TEST_MESSAGE("track " << k.first << " step " << k.second << ": first all-reduce at " << t
                                << " us, backward ends at " << backward_end[k] << " us");
    overlapped += before ? 1 : 0;
  }
  BOOST_TEST(overlapped >= 1);
  BOOST_TEST_REQUIRE(first_ready.size() == first_allreduce.size()); // 2 replicas x 3 steps
  for (const auto& [k, t] : first_ready)
    BOOST_TEST(t < backward_end.at(k), "track " << k.first << " step " << k.second);
  fs::remove_all(dir);
}

BOOST_AUTO_TEST_CASE(a_failing_replica_fails_the_job_naming_it) {
  auto o = quick();
  o.dp = 2;
  o.fault = "stage=0,step=3,replica=1";
  o.max_restarts = 0; // the failure path itself (recovery is tested in recovery_test)
  const auto t0 = std::chrono::steady_clock::now();
  try {
    train(o);
    BOOST_FAIL("the job should have failed");
  } catch (const std::exception& e) {
    std::string what = e.what();
    BOOST_TEST_MESSAGE(what);
    BOOST_TEST(what.find("replica 1") != std::string::npos);
    BOOST_TEST(what.find("injected fault") != std::string::npos);
  }
  const auto seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  BOOST_TEST(seconds < 10.0);
}

BOOST_AUTO_TEST_CASE(bad_data_parallel_options_are_refused) {
  auto o = quick();
  o.dp = 2;
  o.batch_shares = {1, 2, 3};
  BOOST_CHECK_THROW(o.validate(), runtime::input_error);
  o.batch_shares = {1, 0};
  BOOST_CHECK_THROW(o.validate(), runtime::input_error);
  o.batch_shares = {};
  o.batch = 1;
  BOOST_CHECK_THROW(o.validate(), runtime::input_error);
  o.batch = 64;
  o.allreduce = "butterfly";
  BOOST_CHECK_THROW(o.validate(), runtime::input_error);
}
