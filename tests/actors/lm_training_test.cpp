// The character language model through the actor pipeline (troupe train
// --model transformer --data data/sherlock.txt): token batches, the per-token
// loss stage, the warm-up + cosine learning rate and global-norm clipping
// across stages. Every schedule equals --stages 1 with the same micro-batches,
// clipping equals clipping the unsplit model, and a CI-sized run learns.

#define BOOST_TEST_DYN_LINK
#define BOOST_TEST_MODULE actors_lm_training
#include <boost/test/unit_test.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>

#include "actors/pipeline/data_loader.hpp"
#include "actors/cluster/job.hpp"
#include "kernels/cpu/gemm.hpp"
#include "models/train/grad_clip.hpp"
#include "models/train/lr_schedule.hpp"
#include "models/train/optimizer.hpp"
#include "models/train/sequence_loss.hpp"
#include "models/layers/sequential.hpp"
#include "models/zoo.hpp"
#include "runtime/error.hpp"
#include "runtime/io/text_dataset.hpp"
#include "test_util.hpp"

using namespace troupe;
using actors::test::max_relative_difference;
using actors::test::train;

namespace {

const std::string sherlock = std::string{TROUPE_SOURCE_DIR} + "/data/sherlock.txt";

/// 20 steps of the transformer with AdamW, warm-up + cosine and clipping at a
/// norm small enough that every step clips.
actors::train_options lm(double clip_norm = 0.2) {
  actors::train_options o;
  o.model = "transformer";
  o.data_dir = sherlock;
  o.batch = 16;
  o.max_steps = 20;
  o.optimizer = "adamw";
  o.lr = 1e-2f;
  o.weight_decay = 0.01f;
  o.lr_schedule = "cosine";
  o.warmup_steps = 5;
  o.clip_norm = clip_norm;
  o.evaluate = false;
  o.progress = false;
  o.threads = 1;
  return o;
}

struct pipeline {
  actors::schedule_kind kind;
  int stages, virtual_stages;
};

/// The check: GPipe, 1F1B and interleaved (2 x 2 chunks) against
/// --stages 1 with the same 4 micro-batches and --schedule after 20 steps,
/// same seed. On one stage the schedule only orders the micro-batches'
/// backwards (GPipe's in reverse), i.e. the order in which their gradients
/// add up. That order matters for the transformer: the attention's key bias
/// has an exactly zero gradient (softmax ignores a shift of all scores), so
/// its gradient is pure rounding and Adam's first steps turn it into +-lr
/// updates (P=1 GPipe vs 1F1B: 1.7e-5 relative after one step, 1.7e-4
/// after 20, all in the key bias).
void schedules_equal_one_stage(actors::train_options o) {
  o.microbatches = 4;
  for (auto p : {pipeline{actors::schedule_kind::gpipe, 2, 1},
                 pipeline{actors::schedule_kind::one_f_one_b, 2, 1},
                 pipeline{actors::schedule_kind::interleaved, 2, 2}}) {
    auto one = o;
    one.schedule = p.kind;
    auto reference = train(one);
    BOOST_TEST(reference.report.at("steps") == 20);
    BOOST_TEST(reference.report.at("strategy") == "gradient-accumulation");
    const double norm = reference.report.at("grad_norm").get<double>();
    BOOST_TEST(norm > o.clip_norm); // clipping is active, so the check covers it
    auto split = o;
    split.stages = p.stages;
    split.schedule = p.kind;
    split.virtual_stages = p.virtual_stages;
    auto piped = train(split);
    auto what = o.model + " " + std::string{actors::to_string(p.kind)} +
                " P=" + std::to_string(p.stages) + " V=" + std::to_string(p.virtual_stages);
    const double diff = max_relative_difference(piped.params, reference.params);
    BOOST_TEST_MESSAGE(what << ": max relative difference " << diff << " (last global norm "
                            << norm << ", clip at " << o.clip_norm << ")");
    BOOST_TEST(piped.report.at("steps") == 20, what);
    BOOST_TEST(piped.report.at("strategy") == "pipeline", what);
    BOOST_TEST(diff < 1e-5, what);
    BOOST_TEST(std::abs(piped.report.at("grad_norm").get<double>() - norm) <= 1e-5 * norm, what);
  }
}

} // namespace

BOOST_AUTO_TEST_CASE(token_batches_are_windows_with_next_byte_targets) {
  auto text = runtime::text_dataset::load(sherlock, 64, 0.1);
  auto train_set = actors::text_windows(text, runtime::text_split::train, "train");
  auto heldout = actors::text_windows(text, runtime::text_split::heldout, "heldout");
  BOOST_TEST(train_set.size() == static_cast<std::int64_t>(
                                   text.window_starts(runtime::text_split::train).size()));
  BOOST_TEST(heldout.size() == static_cast<std::int64_t>(text.heldout_starts().size()));
  actors::loader_config lc;
  lc.data = train_set;
  lc.sample_shape = {64};
  lc.batch = 10;
  lc.parts = 3;
  auto order = actors::epoch_permutation(train_set.size(), 7, 0);
  auto b = actors::make_batch(lc, order, 0, 2);
  BOOST_REQUIRE(b.inputs.size() == 3u);
  BOOST_TEST(b.inputs[0].shape() == (runtime::shape_t{4, 64}));
  BOOST_TEST(b.labels[0].shape() == (runtime::shape_t{4, 64}));
  BOOST_TEST((b.inputs[2].type() == runtime::dtype::i32));
  const auto ids = text.ids(runtime::text_split::train);
  for (std::size_t part = 0; part < 3; ++part) {
    const auto x = b.inputs[part].values<std::int32_t>();
    const auto y = b.labels[part].values<std::int32_t>();
    for (std::int64_t i = 0; i < b.inputs[part].dim(0); ++i) {
      // Window k of the split starts at byte 64 k; targets are shifted by one.
      const auto start = 64 * order[static_cast<std::size_t>(20 + b.offsets[part] + i)];
      for (std::int64_t t = 0; t < 64; ++t) {
        BOOST_TEST_REQUIRE(x[static_cast<std::size_t>(i * 64 + t)] ==
                           ids[static_cast<std::size_t>(start + t)]);
        BOOST_TEST_REQUIRE(y[static_cast<std::size_t>(i * 64 + t)] ==
                           ids[static_cast<std::size_t>(start + t + 1)]);
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(transformer_schedules_equal_one_stage) {
  schedules_equal_one_stage(lm());
}

BOOST_AUTO_TEST_CASE(mlp_schedules_equal_one_stage_with_clipping_and_cosine) {
  auto o = lm(0.05);
  o.model = "mlp";
  o.data_dir = std::string{TROUPE_SOURCE_DIR} + "/data/mnist";
  o.batch = 64;
  o.lr = 1e-3f;
  schedules_equal_one_stage(o);
}

BOOST_AUTO_TEST_CASE(clipping_changes_the_result) {
  // The same run without clipping ends elsewhere: the checks above would
  // notice a stage that clipped with its own norm or not at all.
  auto clipped = train(lm());
  auto free = train(lm(0));
  BOOST_TEST(free.report.at("grad_norm").is_null());
  BOOST_TEST(max_relative_difference(clipped.params, free.params) > 1e-3);
}

BOOST_AUTO_TEST_CASE(pipelined_clipping_equals_clipping_the_whole_model) {
  // Two stages (layer placement) against a plain loop over the unsplit model
  // with the loader's batches, the same optimizer, schedule and
  // models::clip_by_global_norm over every parameter at once.
  auto o = lm();
  o.max_steps = 10;
  o.stages = 2;
  auto piped = train(o);

  kernels::cpu::set_blas_threads_for_this_thread(1);
  auto spec = models::zoo_model("transformer");
  const std::int64_t context = spec.input_shape.at(0);
  auto text = runtime::text_dataset::load(sherlock, context, 0.1);
  actors::loader_config lc;
  lc.data = actors::text_windows(text, runtime::text_split::train, "train");
  lc.sample_shape = spec.input_shape;
  lc.batch = o.batch;
  lc.seed = o.seed;
  auto order = actors::epoch_permutation(lc.data.size(), o.seed, 0);
  models::sequential model(spec, 0, spec.layers.size(), o.seed);
  auto opt = models::make_optimizer(o.optimizer_config());
  models::lr_schedule schedule({o.lr, o.warmup_steps, o.max_steps, o.lr / 10});
  double norm = 0;
  for (std::int64_t step = 0; step < o.max_steps; ++step) {
    auto b = actors::make_batch(lc, order, 0, step);
    models::forward_context ctx;
    ctx.step = step;
    ctx.seed = o.seed;
    model.zero_grad();
    auto loss = models::sequence_cross_entropy(model.forward(b.inputs[0], ctx), b.labels[0],
                                               1.0f / static_cast<float>(o.batch * context), true);
    model.backward(loss.dlogits, 0, false);
    auto params = model.parameters();
    norm = models::clip_by_global_norm(params, models::sum_of_squares(params), o.clip_norm);
    BOOST_TEST(norm > o.clip_norm);
    opt->step(params, schedule.lr_at(step));
  }
  runtime::named_tensor_list whole;
  for (auto& [name, p] : model.named_parameters())
    whole.emplace_back(name, p->value);
  const double diff = max_relative_difference(piped.params, whole);
  BOOST_TEST_MESSAGE("2 stages vs the unsplit loop: max relative difference " << diff);
  BOOST_TEST(diff < 1e-5);
  BOOST_TEST(std::abs(piped.report.at("grad_norm").get<double>() - norm) <= 1e-6 * norm);
}

BOOST_AUTO_TEST_CASE(transformer_learns_sherlock) {
  // A CI-sized run as `troupe train --model transformer --data
  // data/sherlock.txt` does it: the held-out tail's loss after two epochs
  // must fall well below its unigram entropy (the best context-free
  // predictor).
  auto text = runtime::text_dataset::load(sherlock, 64, 0.1);
  const double unigram = runtime::unigram_entropy_bits(text.ids(runtime::text_split::heldout));
  auto o = lm(1.0);
  o.max_steps = -1;
  o.epochs = 2;
  o.warmup_steps = 50;
  o.evaluate = true;
  const auto t0 = std::chrono::steady_clock::now();
  auto r = train(o).report;
  const double secs =
    std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double bits = r.at("bits_per_char").get<double>();
  std::printf("transformer on sherlock.txt through actors: %lld steps in %.1f s, train loss "
              "%.3f nats/char, held-out %.3f bits/char, unigram entropy %.3f bits (ratio %.2f)\n",
              static_cast<long long>(r.at("steps").get<std::int64_t>()), secs,
              r.at("final_loss").get<double>(), bits, unigram, bits / unigram);
  BOOST_TEST(r.at("test_accuracy").is_null());
  BOOST_TEST(r.at("epoch_log").size() == 2u);
  BOOST_TEST(r.at("epoch_log")[1].at("bits_per_char").get<double>() == bits);
  BOOST_TEST(std::abs(r.at("epoch_log")[1].at("test_loss").get<double>() / std::log(2.0) - bits) <
             1e-9);
  BOOST_TEST(bits < 0.8 * unigram);
}

BOOST_AUTO_TEST_CASE(bad_lm_inputs_are_input_errors) {
  auto o = lm();
  o.data_dir = "/nonexistent/sherlock.txt";
  BOOST_CHECK_THROW(train(o), runtime::input_error);
  o.data_dir = std::string{TROUPE_SOURCE_DIR} + "/data/mnist"; // a directory, not a text
  BOOST_CHECK_THROW(train(o), runtime::input_error);
  o = lm();
  o.warmup_steps = 20; // as many as the run has
  BOOST_CHECK_THROW(train(o), runtime::input_error);
  o = lm();
  o.lr_schedule = "linear";
  BOOST_CHECK_THROW(train(o), runtime::input_error);
  o = lm();
  o.clip_norm = -1;
  BOOST_CHECK_THROW(train(o), runtime::input_error);
}
