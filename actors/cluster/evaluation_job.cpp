#include "actors/cluster/evaluation_job.hpp"

#include <algorithm>
#include <filesystem>
#include <stdexcept>
#include <string>

#include "models/train/sequence_loss.hpp"
#include "models/zoo.hpp"
#include "runtime/error.hpp"
#include "runtime/io/checkpoint.hpp"

namespace troupe::actors {

namespace {

/// The topology and run flags of `request` on the checkpoint's options:
/// nothing of the training run's own topology, schedule, faults or outputs
/// is kept.
void apply_request(train_options& o, const evaluation_request& r, bool sequence_model) {
  if (!r.data.empty()) {
    // An IDX directory or a language model's text: its own test split (the
    // t10k files, the text's held-out tail). A labeled file (.npz, CSV, ...):
    // all of it, as the test set; the training file stays the checkpoint's,
    // so --normalize auto's statistics are training's own.
    if (sequence_model || std::filesystem::is_directory(r.data)) {
      o.data_dir = r.data;
    } else {
      o.test_data = r.data;
      o.holdout = 0;
    }
  }
  o.stages = r.stages;
  o.tp = r.tp;
  o.dp = r.dp;
  o.microbatches = r.microbatches;
  o.schedule = schedule_kind::gpipe;
  o.virtual_stages = 1;
  o.split.clear();
  o.batch_shares.clear();
  o.partition = "flops";
  o.ps = 0;
  o.ps_mode = ps_mode::sync;
  o.staleness = 0;
  o.plan = r.plan;
  o.batch = std::max<std::int64_t>(o.batch, r.dp);
  o.threads = r.threads;
  o.progress = r.progress;
  o.evaluate = true;
  o.evaluate_only = true;
  o.predict = r.predict;
  o.eval_every = 0;
  o.resume_dir = r.checkpoint;
  o.checkpoint_dir.clear();
  o.checkpoint_every = 0;
  o.checkpoint_seconds = 0;
  o.trace_file.clear();
  o.fault.clear();
  o.slow_stage = -1;
  o.slow_replica = -1;
  o.slow_factor = 1.0;
  o.check_replicas = 0;
  o.max_restarts = 0;
  o.snapshot_every = 0;
  o.warmup_steps = 0;
  o.lr_schedule = "constant";
}

} // namespace

train_options evaluation_options(const evaluation_request& request) {
  const auto& dir = request.checkpoint;
  if (dir.empty())
    throw runtime::input_error("--checkpoint: a checkpoint directory is needed");
  if (!std::filesystem::is_directory(dir))
    throw runtime::input_error("--checkpoint " + dir + ": no such directory");
  auto ck = runtime::read_checkpoint(dir);
  const auto manifest = (std::filesystem::path(dir) / "manifest.json").string();
  train_options o;
  try {
    o = train_options_from_json(ck.config);
  } catch (const runtime::input_error& e) {
    throw runtime::input_error(manifest + ": config: " + e.what());
  }
  if (request.plan.is_null() && o.model_spec.is_null()) {
    // Without a plan the model is planned from its spec: a zoo model by name
    // when the checkpoint holds exactly that model, else the checkpoint's own
    // spec (a --model FILE.json run, or a checkpoint from before the options
    // carried the spec).
    bool zoo = false;
    try {
      zoo = models::zoo_model(o.model).to_json() == ck.model;
    } catch (const std::invalid_argument&) {
    }
    if (!zoo)
      o.model_spec = ck.model;
  }
  bool sequence_model = false;
  try {
    sequence_model = models::is_sequence_model(models::model_spec::from_json(ck.model));
  } catch (const std::exception& e) {
    throw runtime::input_error(manifest + ": model: " + e.what());
  }
  apply_request(o, request, sequence_model);
  o.validate();
  return o;
}

job_result run_evaluation(caf::actor_system& sys, const evaluation_request& request) {
  return run_training(sys, evaluation_options(request));
}

} // namespace troupe::actors
