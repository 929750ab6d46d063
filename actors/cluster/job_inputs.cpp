#include "actors/cluster/job_inputs.hpp"

#include <filesystem>
#include <string>
#include <utility>

#include "actors/cluster/checkpoint_target.hpp"
#include "actors/cluster/job_data.hpp"
#include "actors/training/trainer.hpp"
#include "models/train/sequence_loss.hpp"
#include "runtime/error.hpp"
#include "runtime/io/file_util.hpp"
#include "runtime/io/output_path.hpp"
#include "runtime/io/text_dataset.hpp"

namespace troupe::actors {

namespace {

/// The part of a language model's text held out for evaluation: its last 10%.
constexpr double text_heldout_fraction = 0.1;

/// A language model's data: the text file `file` cut into the training part
/// and the held-out tail, each as non-overlapping windows of the model's
/// context with next-byte targets.
std::pair<dataset, dataset> load_text(const std::string& file, const train_options& opts,
                                      const models::model_spec& model) {
  if (std::filesystem::is_directory(file))
    throw runtime::input_error("--model " + opts.model +
                               " reads a text file (--data FILE, e.g. "
                               "data/sherlock.txt), but '" +
                               file + "' is a directory");
  auto text = runtime::text_dataset::load(file, model.input_shape.at(0), text_heldout_fraction);
  const auto vocab = models::output_shape(model).back();
  if (text.vocab_size() > vocab)
    throw runtime::input_error("--data " + file + ": the text has " +
                               std::to_string(text.vocab_size()) + " distinct bytes, more than " +
                               "the " + std::to_string(vocab) + " of model " + opts.model +
                               "'s vocabulary");
  auto name = std::filesystem::path(file).filename().string();
  return {text_windows(text, runtime::text_split::train, name + "/train"),
          text_windows(text, runtime::text_split::heldout, name + "/heldout")};
}

/// --trace FILE is written when the run ends: prove now that it can be (its
/// directory exists or can be made, and is writable), so a job never trains
/// for hours and then fails to write its timeline.
void check_trace_file(const std::string& file) {
  std::filesystem::path p{file};
  if (std::filesystem::is_directory(p))
    throw runtime::input_error("--trace " + file + ": is a directory, not a file");
  try {
    runtime::ensure_writable_directory(p.has_parent_path() ? p.parent_path()
                                                           : std::filesystem::path{"."});
  } catch (const runtime::input_error& e) {
    throw runtime::input_error("--trace " + file + ": " + e.what());
  }
}

/// `troupe evaluate` / `predict`: the checkpoint, which must hold the model
/// planned (the options came from its own config) and test data to run.
runtime::checkpoint read_evaluated_checkpoint(const train_options& opts, const plan& topology) {
  auto ck = runtime::read_checkpoint(opts.resume_dir);
  if (ck.model != topology.model.to_json())
    throw runtime::input_error("--checkpoint " + opts.resume_dir +
                               ": its model spec (manifest.json) is not model " + opts.model);
  if (opts.predict && models::is_sequence_model(topology.model))
    throw runtime::input_error("--checkpoint " + opts.resume_dir + ": model " + opts.model +
                               " is a language model; predict takes classifiers (use generate)");
  return ck;
}

} // namespace

job_inputs prepare_job(job_request request, const std::vector<device_slot>& available) {
  job_inputs job;
  job.opts = std::move(request.opts);
  if (request.saved_plan) {
    // A saved plan (--plan FILE, or run_training's): its topology, on this cluster's devices.
    job.topology = place_saved_plan(std::move(*request.saved_plan), available);
    adopt_plan_degrees(job.opts, job.topology);
  } else {
    job.topology = make_plan(job.opts, available);
  }
  job.interrupt = std::move(request.interrupt);
  // What the run writes, checked before any data is loaded (and never created here).
  if (!job.opts.checkpoint_dir.empty())
    runtime::check_output_directory("--checkpoint", job.opts.checkpoint_dir);
  if (!job.opts.trace_file.empty())
    check_trace_file(job.opts.trace_file);
  check_checkpoint_target(job.opts, job.topology);
  if (models::is_sequence_model(job.topology.model)) {
    if (job.opts.loss != loss_kind::automatic && job.opts.loss != loss_kind::sequence)
      throw runtime::input_error("--loss " + std::string{to_string(job.opts.loss)} + ": model " +
                                 job.opts.model + " is a language model (--loss sequence)");
    if (request.train_data) { // token windows given by a library caller
      job.train_set = std::move(*request.train_data);
      job.test_set = request.test_data.value_or(dataset{});
      job.opts.evaluate = job.opts.evaluate && job.test_set.size() > 0;
    } else {
      std::tie(job.train_set, job.test_set) =
          load_text(job.opts.data_dir, job.opts, job.topology.model);
    }
  } else {
    load_labeled_data(job, std::move(request.train_data), std::move(request.test_data));
  }
  const auto steps = total_training_steps(job.opts, job.train_set.size());
  if (!job.opts.evaluate_only && job.opts.warmup_steps > 0 && job.opts.warmup_steps >= steps)
    throw runtime::input_error("--warmup-steps " + std::to_string(job.opts.warmup_steps) +
                               " must be fewer than the run's " + std::to_string(steps) +
                               " training steps");
  if (job.opts.evaluate_only) {
    job.resume = read_evaluated_checkpoint(job.opts, job.topology);
  } else if (!job.opts.resume_dir.empty()) {
    job.resume = runtime::read_checkpoint(job.opts.resume_dir);
    check_resume_compatible(*job.resume, job.opts, job.topology, job.train_set.size());
  }
  return job;
}

} // namespace troupe::actors
