#define BOOST_TEST_DYN_LINK
#define BOOST_TEST_MODULE actors_training
#include <boost/test/unit_test.hpp>

#include <chrono>
#include <filesystem>
#include <map>

#include "actors/cluster/job.hpp"
#include "actors/plan/schedule.hpp"
#include "runtime/error.hpp"
#include "test_util.hpp"

using namespace troupe;
using actors::test::bitwise_equal;
using actors::test::max_relative_difference;
using actors::test::order_insensitive;
using actors::test::quick;
using actors::test::train;
namespace fs = std::filesystem;

namespace {

fs::path temp_dir(const std::string& name) {
  auto p = fs::temp_directory_path() / ("troupe-test-" + name + "-" + std::to_string(::getpid()));
  fs::remove_all(p);
  return p;
}

} // namespace

BOOST_AUTO_TEST_CASE(two_and_three_stages_equal_one_stage) {
  auto reference = train(quick());
  BOOST_TEST(reference.report.at("steps") == 20);
  BOOST_TEST(reference.params.size() == 6u);
  for (int stages : {2, 3}) {
    auto o = quick();
    o.stages = stages;
    auto split = train(o);
    BOOST_TEST(split.report.at("strategy") == "layer-placement");
    // Same kernels in the same order on each layer: the tolerance is the
    // issue's 1e-6, and in practice the parameters are bitwise equal.
    BOOST_TEST(max_relative_difference(split.params, reference.params) < 1e-6);
    BOOST_TEST(split.report.at("final_loss").get<double>() ==
               reference.report.at("final_loss").get<double>());
  }
}

BOOST_AUTO_TEST_CASE(both_gemm_libraries_keep_the_equivalences) {
  // The default (--gemm auto) runs oneDNN on one-thread devices, as every
  // other test here does, so this one checks OpenBLAS (--gemm openblas, and
  // auto on devices with more threads): its stages still equal one stage
  // (same kernels, same order), data parallelism equals one replica within
  // the dp tolerance, and the two libraries' runs differ only by their
  // summation orders.
  auto o = order_insensitive(quick());
  auto by_default = train(o);
  BOOST_TEST(by_default.report.at("config").at("gemm") == "auto");
  o.gemm = kernels::cpu::gemm_backend::onednn;
  auto onednn = train(o);
  BOOST_TEST(bitwise_equal(by_default.params, onednn.params));
  o.gemm = kernels::cpu::gemm_backend::openblas;
  auto reference = train(o);
  BOOST_TEST(reference.report.at("config").at("gemm") == "openblas");
  auto staged = o;
  staged.stages = 2;
  auto split = train(staged);
  BOOST_TEST(max_relative_difference(split.params, reference.params) < 1e-6);
  auto replicated = o;
  replicated.dp = 2;
  auto dp = train(replicated);
  BOOST_TEST(max_relative_difference(dp.params, reference.params) < 1e-5);
  const auto libraries = max_relative_difference(reference.params, onednn.params);
  BOOST_TEST_MESSAGE("oneDNN vs OpenBLAS after 20 steps: max relative difference " << libraries);
  BOOST_TEST(libraries < 1e-4);
}

BOOST_AUTO_TEST_CASE(cnn_two_stages_equal_one_stage) {
  auto o = quick("cnn");
  o.max_steps = 10;
  auto reference = train(o);
  o.stages = 2;
  auto split = train(o);
  BOOST_TEST(max_relative_difference(split.params, reference.params) < 1e-6);
}

BOOST_AUTO_TEST_CASE(pipelines_equal_gradient_accumulation) {
  for (auto kind : {actors::schedule_kind::gpipe, actors::schedule_kind::one_f_one_b}) {
    auto o = quick();
    o.microbatches = 4;
    o.schedule = kind;
    auto accumulated = train(o);
    BOOST_TEST(accumulated.report.at("strategy") == "gradient-accumulation");
    o.stages = 2;
    auto piped = train(o);
    BOOST_TEST(piped.report.at("strategy") == "pipeline");
    BOOST_TEST(bitwise_equal(piped.params, accumulated.params));
  }
}

BOOST_AUTO_TEST_CASE(every_schedule_equals_one_stage_with_the_same_micro_batches) {
  // The check: GPipe, 1F1B and interleaved 1F1B (2 chunks per device,
  // the mlp's 5 layers in 4 chunks) against --stages 1 with the same
  // micro-batches after 20 steps, same seed. Every schedule runs a chunk's
  // backwards in micro-batch order, so each layer adds its micro-batch
  // gradients in the same order as one stage does: bitwise equal, on every
  // CPU and BLAS kernel (the one-stage reference runs gpipe).
  struct pipeline {
    actors::schedule_kind kind;
    int stages, virtual_stages, microbatches;
  };
  std::map<int, actors::job_result> references;
  for (auto p : {pipeline{actors::schedule_kind::gpipe, 2, 1, 4},
                 pipeline{actors::schedule_kind::one_f_one_b, 2, 1, 4},
                 pipeline{actors::schedule_kind::interleaved, 2, 2, 4},
                 pipeline{actors::schedule_kind::interleaved, 2, 2, 3}, // M % P != 0
                 pipeline{actors::schedule_kind::interleaved, 1, 3, 4}, // chunks on one device
                 // Zero-bubble: input gradients (B) and weight gradients (W)
                 // apart, each in micro-batch order per chunk.
                 pipeline{actors::schedule_kind::zb1, 2, 1, 4},
                 pipeline{actors::schedule_kind::zb1, 3, 1, 5},
                 pipeline{actors::schedule_kind::zbv, 2, 2, 4},
                 pipeline{actors::schedule_kind::zbv, 2, 2, 3},    // fewer than 2P - 1
                 pipeline{actors::schedule_kind::zbv, 1, 2, 4}}) { // the V on one device
    auto o = quick();
    o.microbatches = p.microbatches;
    if (!references.count(p.microbatches))
      references.emplace(p.microbatches, train(o));
    const auto& reference = references.at(p.microbatches);
    o.stages = p.stages;
    o.schedule = p.kind;
    o.virtual_stages = p.virtual_stages;
    auto piped = train(o);
    auto what = std::string{actors::to_string(p.kind)} + " P=" + std::to_string(p.stages) +
                " V=" + std::to_string(p.virtual_stages) + " M=" + std::to_string(p.microbatches);
    BOOST_TEST(piped.report.at("steps") == 20, what);
    BOOST_TEST(piped.report.at("plan").at("virtual_stages") == p.virtual_stages, what);
    BOOST_TEST(bitwise_equal(piped.params, reference.params), what);
    // The loss comes from whichever stage holds the last chunk (stage 0 in zbv's V).
    BOOST_TEST(piped.report.at("final_loss").get<double>() ==
                   reference.report.at("final_loss").get<double>(),
               what);
  }
}

BOOST_AUTO_TEST_CASE(reported_peaks_in_flight_are_the_schedules) {
  // The report's per-stage peak of micro-batches holding activations is
  // measured by the shards: it must be the schedule's (GPipe holds all M,
  // 1F1B at most P - stage), so a schedule that ran out of order, or a
  // figure that was never measured (0), fails here.
  for (auto kind : {actors::schedule_kind::gpipe, actors::schedule_kind::one_f_one_b,
                    actors::schedule_kind::zb1}) {
    auto o = quick();
    o.max_steps = 3;
    o.stages = 2;
    o.microbatches = 4;
    o.schedule = kind;
    auto r = train(o).report;
    const auto& stages = r.at("stages");
    BOOST_REQUIRE_EQUAL(stages.size(), 2u);
    for (const auto& s : stages) {
      const int stage = s.at("stage").get<int>();
      const int expected =
          actors::peak_in_flight(actors::make_schedule(kind, o.stages, stage, o.microbatches));
      BOOST_TEST(expected >= 1);
      BOOST_TEST(s.at("peak_in_flight").get<int>() == expected, actors::to_string(kind)
                                                                    << " stage " << stage);
    }
  }
}

BOOST_AUTO_TEST_CASE(interleaved_evaluates_and_resumes_like_one_stage) {
  // Evaluation runs the forward-only schedule through every chunk; a
  // checkpoint from one placement resumes in another (names are global).
  auto o = quick();
  o.batch = 6000; // 10 steps per epoch, then the test-set evaluation
  o.max_steps = -1;
  o.evaluate = true;
  o.microbatches = 4;
  auto reference = train(o);
  auto inter = o;
  inter.stages = 2;
  inter.schedule = actors::schedule_kind::interleaved;
  inter.virtual_stages = 2;
  auto piped = train(inter);
  BOOST_TEST(piped.report.at("test_accuracy").get<double>() ==
             reference.report.at("test_accuracy").get<double>());
  BOOST_TEST(max_relative_difference(piped.params, reference.params) < 1e-5);

  auto dir = temp_dir("interleaved-resume");
  auto first = quick();
  first.microbatches = 4;
  first.max_steps = 10;
  first.checkpoint_dir = dir.string();
  train(first);
  auto second = inter;
  second.evaluate = false;
  second.batch = first.batch;
  second.max_steps = 20;
  second.resume_dir = dir.string();
  auto resumed = train(second);
  BOOST_TEST(resumed.report.at("steps_this_run") == 10);
  auto straight = quick();
  straight.microbatches = 4;
  BOOST_TEST(max_relative_difference(resumed.params, train(straight).params) < 1e-5);
  fs::remove_all(dir);
}

BOOST_AUTO_TEST_CASE(zbv_evaluates_like_one_stage) {
  // zbv's forward-only schedule through the V: stage 0 holds the first and
  // the last chunk, the last stage passes chunk 0's output to its own chunk 1.
  auto o = quick();
  o.batch = 6000; // 10 steps per epoch, then the test-set evaluation
  o.max_steps = -1;
  o.evaluate = true;
  o.microbatches = 4;
  auto reference = train(o);
  o.stages = 2;
  o.schedule = actors::schedule_kind::zbv;
  o.virtual_stages = 2;
  auto piped = train(o);
  BOOST_TEST(piped.report.at("test_accuracy").get<double>() ==
             reference.report.at("test_accuracy").get<double>());
  BOOST_TEST(bitwise_equal(piped.params, reference.params));
}

BOOST_AUTO_TEST_CASE(micro_batches_approximate_the_full_batch) {
  // Same mean gradient summed in a different order: equal up to float
  // rounding (order_insensitive says why not under Adam).
  auto whole = train(order_insensitive(quick()));
  auto o = order_insensitive(quick());
  o.microbatches = 4;
  auto parts = train(o);
  BOOST_TEST(max_relative_difference(parts.params, whole.params) < 1e-5);
}

BOOST_AUTO_TEST_CASE(report_has_the_documented_fields) {
  auto r = train(quick()).report;
  for (const char* key :
       {"model", "strategy", "epochs", "steps", "batch", "final_loss", "test_accuracy",
        "samples_per_second", "wall_seconds", "git_commit", "threads", "blas", "config"})
    BOOST_TEST(r.contains(key), key);
  BOOST_TEST(r.at("final_loss").get<double>() > 0);
  BOOST_TEST(r.at("config").at("seed") == 0);
}

BOOST_AUTO_TEST_CASE(resume_continues_exactly) {
  // Two epochs in one go, or one epoch, a stop, and --resume for the second.
  auto o = quick();
  o.max_steps = -1;
  o.batch = 512; // 118 steps per epoch keeps the test short
  o.epochs = 2;
  o.optimizer = "adam";
  auto straight = train(o);
  auto dir = temp_dir("resume");
  auto first = o;
  first.epochs = 1;
  first.checkpoint_dir = dir.string();
  auto half = train(first);
  BOOST_TEST(fs::exists(dir / "manifest.json"));
  BOOST_TEST(fs::exists(dir / "model.safetensors"));
  auto second = o;
  second.resume_dir = dir.string();
  auto resumed = train(second);
  BOOST_TEST(resumed.report.at("steps") == straight.report.at("steps"));
  BOOST_TEST(resumed.report.at("steps_this_run") == 118);
  BOOST_TEST(max_relative_difference(resumed.params, straight.params) < 1e-6);
  BOOST_TEST(std::abs(resumed.report.at("final_loss").get<double>() -
                      straight.report.at("final_loss").get<double>()) < 1e-9);
  fs::remove_all(dir);
}

BOOST_AUTO_TEST_CASE(a_failing_stage_aborts_the_job_naming_it) {
  auto o = quick();
  o.stages = 2;
  o.fault = "stage=1,step=5";
  o.max_restarts = 0; // the failure path itself (recovery is tested in recovery_test)
  auto t0 = std::chrono::steady_clock::now();
  try {
    train(o);
    BOOST_FAIL("the job should have failed");
  } catch (const std::runtime_error& e) {
    std::string what = e.what();
    BOOST_TEST(what.find("layer_shard stage 1") != std::string::npos, what);
    BOOST_TEST(what.find("injected fault") != std::string::npos, what);
  }
  bool fast = std::chrono::steady_clock::now() - t0 < std::chrono::seconds(30);
  BOOST_TEST(fast);
}

BOOST_AUTO_TEST_CASE(bad_inputs_are_input_errors) {
  auto o = quick();
  o.data_dir = "/nonexistent/mnist";
  BOOST_CHECK_THROW(train(o), runtime::input_error);
  o = quick("resnet");
  BOOST_CHECK_THROW(train(o), runtime::input_error);
  o = quick();
  o.stages = 9;
  BOOST_CHECK_THROW(train(o), runtime::input_error);
  o = quick();
  o.stages = 2;
  o.schedule = actors::schedule_kind::interleaved;
  o.virtual_stages = 3; // 6 chunks of a 5-layer model
  BOOST_CHECK_THROW(train(o), runtime::input_error);
  o.schedule = actors::schedule_kind::one_f_one_b;
  o.virtual_stages = 2; // virtual stages need the interleaved schedule
  BOOST_CHECK_THROW(train(o), runtime::input_error);
  o = quick();
  o.resume_dir = "/nonexistent/checkpoint";
  BOOST_CHECK_THROW(train(o), runtime::input_error);
}
