// Recovery in one process (actors/cluster/recovery.hpp): an injected fault
// (an actor that exits, one that hangs, a parameter server that throws) ends
// a generation; the job restores the cheapest restore point and finishes
// equal to the run without the fault. The multi-process cases (kill -9,
// SIGSTOP, shrinking, growing back) are in tests/cluster/cluster_test.py.
#define BOOST_TEST_MODULE recovery
#include <cmath>
#include <filesystem>
#include <string>

#include <boost/test/unit_test.hpp>

#include "runtime/io/checkpoint.hpp"
#include "test_util.hpp"

using namespace troupe;
using namespace troupe::actors;
using namespace troupe::actors::test;

namespace {

/// "Equal to the failure-free run": the bound on the largest
/// per-tensor norm-relative difference.
constexpr double equal_to_failure_free = 1e-4;

train_options longer(train_options o) {
  o.max_steps = 60;
  return o;
}

const nlohmann::json& only_restart(const job_result& r) {
  const auto& restarts = r.report.at("recovery").at("restarts");
  BOOST_REQUIRE_EQUAL(restarts.size(), 1u);
  return restarts.at(0);
}

} // namespace

BOOST_AUTO_TEST_CASE(an_exiting_shard_is_restored_from_the_snapshot_bitwise) {
  auto o = longer(quick());
  o.stages = 2;
  o.microbatches = 2;
  o.snapshot_every = 20;
  const auto clean = train(o);
  BOOST_TEST(clean.report.at("recovery").at("restarts").empty());
  o.fault = "exit:stage=1,step=30";
  const auto healed = train(o);
  const auto& r = only_restart(healed);
  BOOST_TEST(r.at("restore_source").get<std::string>() == "snapshot");
  BOOST_TEST(r.at("restored_step").get<int>() == 20);
  BOOST_TEST(r.at("failed_at_step").get<int>() == 30);
  BOOST_TEST(r.at("steps_redone").get<int>() == 10);
  BOOST_TEST(r.at("failures").dump().find("injected exit at step 30") != std::string::npos);
  BOOST_TEST(!r.at("seconds_lost").is_null());
  // The same shards in the same order: bitwise the run without the fault.
  BOOST_TEST(bitwise_equal(healed.params, clean.params));
}

BOOST_AUTO_TEST_CASE(a_lost_replica_is_rebuilt_from_a_live_one_with_no_step_redone) {
  auto o = longer(quick());
  o.dp = 2;
  const auto clean = train(o);
  o.fault = "exit:stage=0,step=30,replica=1";
  const auto healed = train(o);
  const auto& r = only_restart(healed);
  BOOST_TEST(r.at("restore_source").get<std::string>() == "replicas");
  BOOST_TEST(r.at("steps_redone").get<int>() == 0);
  BOOST_TEST(r.at("dp").get<int>() == 2);
  const double diff = max_relative_difference(healed.params, clean.params);
  BOOST_TEST_MESSAGE("dp 2, replica 1 lost at step 30: max rel diff " << diff);
  BOOST_TEST(diff <= equal_to_failure_free);
}

BOOST_AUTO_TEST_CASE(a_hung_replica_is_rebuilt_from_a_live_one_with_no_step_redone) {
  // In one process the live replica's device waits for the hung one in the
  // shared reduction (its update not begun): the salvage still reads its
  // parameters at once.
  auto o = longer(quick());
  o.dp = 2;
  o.stall_timeout_s = 1.5;
  const auto clean = train(o);
  o.fault = "hang:stage=0,step=30,replica=1";
  const auto healed = train(o);
  const auto& r = only_restart(healed);
  BOOST_TEST(r.at("restore_source").get<std::string>() == "replicas");
  BOOST_TEST(r.at("steps_redone").get<int>() == 0);
  const double diff = max_relative_difference(healed.params, clean.params);
  BOOST_TEST_MESSAGE("dp 2, replica 1 hung at step 30: max rel diff " << diff);
  BOOST_TEST(diff <= equal_to_failure_free);
}

BOOST_AUTO_TEST_CASE(a_hung_stage_is_reported_with_what_everyone_waits_for_then_recovered) {
  auto o = longer(quick());
  o.stages = 2;
  o.microbatches = 2;
  o.snapshot_every = 20;
  o.stall_timeout_s = 1.5;
  const auto clean = train(o);
  o.fault = "hang:stage=1,step=25";
  const auto healed = train(o);
  const auto& stall = healed.report.at("recovery").at("last_stall");
  BOOST_REQUIRE(stall.is_object());
  const auto message = stall.at("message").get<std::string>();
  BOOST_TEST_MESSAGE("stall report: " << message);
  BOOST_TEST(stall.at("step").get<int>() == 25);
  // The silent actor, and the one that waits for it with what it waits for.
  BOOST_TEST(message.find("layer_shard stage 1 on local/cpu:1 (node local) has not answered") !=
             std::string::npos);
  BOOST_TEST(message.find("layer_shard stage 0") != std::string::npos);
  BOOST_TEST(message.find("waits for the gradient of micro-batch") != std::string::npos);
  BOOST_TEST(message.find("trainer") != std::string::npos);
  const auto& r = only_restart(healed);
  BOOST_TEST(r.at("restore_source").get<std::string>() == "snapshot");
  BOOST_TEST(bitwise_equal(healed.params, clean.params));
}

BOOST_AUTO_TEST_CASE(a_failing_sync_parameter_server_is_restored_from_the_snapshot) {
  auto o = longer(quick());
  o.ps = 2;
  o.dp = 2;
  o.snapshot_every = 10;
  const auto clean = train(o);
  o.fault = "ps=1,step=25";
  const auto healed = train(o);
  const auto& r = only_restart(healed);
  BOOST_TEST(r.at("restore_source").get<std::string>() == "snapshot");
  BOOST_TEST(r.at("restored_step").get<int>() == 20);
  BOOST_TEST(bitwise_equal(healed.params, clean.params));
}

BOOST_AUTO_TEST_CASE(a_lost_worker_is_rebuilt_from_the_live_parameter_servers) {
  auto o = longer(quick());
  o.ps = 2;
  o.dp = 2;
  o.snapshot_every = 0; // the parameter servers are the only copy
  const auto clean = train(o);
  o.fault = "exit:stage=0,step=25,replica=1";
  const auto healed = train(o);
  const auto& r = only_restart(healed);
  BOOST_TEST(r.at("restore_source").get<std::string>() == "parameter_servers");
  BOOST_TEST(r.at("steps_redone").get<int>() == 0);
  BOOST_TEST(bitwise_equal(healed.params, clean.params));
}

BOOST_AUTO_TEST_CASE(async_parameter_servers_recover_too) {
  // Async workers are not deterministic: the healed run is checked by its
  // loss, which must stay that of training (not of a restart from scratch).
  auto o = quick();
  o.max_steps = 200;
  o.ps = 2;
  o.dp = 2;
  o.ps_mode = ps_mode::async;
  const auto clean = train(o);
  o.fault = "exit:stage=0,step=120,replica=1";
  const auto healed = train(o);
  const auto& r = only_restart(healed);
  BOOST_TEST(r.at("restore_source").get<std::string>() == "parameter_servers");
  const double a = clean.report.at("final_loss").get<double>();
  const double b = healed.report.at("final_loss").get<double>();
  BOOST_TEST_MESSAGE("async: final loss " << a << " without the fault, " << b << " healed");
  BOOST_TEST(std::abs(a - b) <= 0.1 * a);
}

BOOST_AUTO_TEST_CASE(a_failing_tensor_parallel_rank_is_recovered) {
  auto o = longer(quick());
  o.tp = 2;
  o.snapshot_every = 10;
  const auto clean = train(o);
  o.fault = "stage=0,step=15";
  const auto healed = train(o);
  const auto& r = only_restart(healed);
  BOOST_TEST(r.at("restore_source").get<std::string>() == "snapshot");
  BOOST_TEST(r.at("restored_step").get<int>() == 10);
  BOOST_TEST(bitwise_equal(healed.params, clean.params));
}

BOOST_AUTO_TEST_CASE(periodic_checkpoints_are_written_without_stopping_and_restored) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("troupe-recovery-ck-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  auto o = longer(quick());
  o.checkpoint_dir = dir.string();
  o.checkpoint_every = 10;
  o.snapshot_every = 0; // the checkpoint on disk is the only restore point
  const auto clean = train(o);
  BOOST_TEST(clean.report.at("recovery").at("checkpoint_step").get<int>() == 60);
  std::filesystem::remove_all(dir);
  o.fault = "exit:stage=0,step=55";
  const auto healed = train(o);
  const auto& r = only_restart(healed);
  BOOST_TEST(r.at("restore_source").get<std::string>() == "checkpoint");
  // The latest one complete when the fault struck (the writes run beside
  // training, so which one that is depends on the machine's speed).
  const auto restored = r.at("restored_step").get<int>();
  BOOST_TEST_MESSAGE("restored the checkpoint of step " << restored);
  BOOST_TEST((restored > 0 && restored <= 50 && restored % 10 == 0));
  BOOST_TEST(bitwise_equal(healed.params, clean.params));
  // The finished checkpoint holds the final parameters, as --resume reads them.
  auto ck = runtime::read_checkpoint(dir);
  BOOST_TEST(ck.trainer_state.at("global_step").get<int>() == 60);
  std::filesystem::remove_all(dir);
}

BOOST_AUTO_TEST_CASE(periodic_checkpoints_without_restarts_finish) {
  // Snapshots left on auto with recovery off: the automatic interval is 0,
  // and widening it once looped for ever (the trainer hung at the first
  // periodic checkpoint).
  const auto dir = std::filesystem::temp_directory_path() /
                   ("troupe-recovery-off-" + std::to_string(::getpid()));
  auto o = quick();
  o.max_restarts = 0;
  o.checkpoint_dir = dir.string();
  o.checkpoint_every = 5;
  const auto r = train(o);
  BOOST_TEST(r.report.at("recovery").at("checkpoint_step").get<int>() == 20);
  std::filesystem::remove_all(dir);
}

BOOST_AUTO_TEST_CASE(without_restarts_the_first_failure_ends_the_job) {
  auto o = quick();
  o.fault = "exit:stage=0,step=5";
  o.max_restarts = 0;
  try {
    train(o);
    BOOST_FAIL("the job should have failed");
  } catch (const std::exception& e) {
    BOOST_TEST(std::string{e.what()}.find("injected exit at step 5") != std::string::npos);
  }
}

BOOST_AUTO_TEST_CASE(bad_recovery_options_are_named) {
  auto expect_error = [](train_options o, const std::string& flag) {
    try {
      o.validate();
      BOOST_ERROR("accepted a bad " << flag);
    } catch (const std::exception& e) {
      BOOST_TEST_MESSAGE(e.what());
      BOOST_TEST(std::string{e.what()}.find(flag) != std::string::npos);
    }
  };
  auto o = quick();
  o.dp = 2;
  o.min_dp = 3;
  expect_error(o, "--min-dp");
  o = quick();
  o.checkpoint_every = 10; // without --checkpoint DIR
  expect_error(o, "--checkpoint-every");
  o = quick();
  o.snapshot_every = -2;
  expect_error(o, "--snapshot-every");
  o = quick();
  o.max_restarts = -1;
  expect_error(o, "--max-restarts");
  o = quick();
  o.fault = "hang:ps=0,step=3";
  expect_error(o, "--inject-fault");
}
