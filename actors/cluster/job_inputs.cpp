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

namespace troupe::actors {

namespace {

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

job_inputs prepare_job(job_request request, const std::vector<device_slot>& available,
                       bool data_on_nodes) {
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
  if (job.opts.evaluate_only)
    job.resume = read_evaluated_checkpoint(job.opts, job.topology);
  else if (!job.opts.resume_dir.empty())
    job.resume = runtime::read_checkpoint(job.opts.resume_dir);
  // run_training's own data sets are in this process: its loaders are too.
  job.data_from =
      data_on_nodes && !request.train_data ? data_source::nodes : data_source::supervisor;
  if (job.data_from == data_source::nodes)
    return job; // the nodes read the data; use_data_summary takes what they found
  job.data = read_job_data(job.opts, job.topology.model, std::move(request.train_data),
                           std::move(request.test_data));
  use_data_summary(job, summarize(job.data, false));
  return job;
}

void use_data_summary(job_inputs& job, nlohmann::json summary) {
  auto& o = job.opts;
  if (!models::is_sequence_model(job.topology.model))
    o.loss = parse_loss_kind(summary.at("loss").get<std::string>());
  o.evaluate = summary.at("evaluate").get<bool>();
  job.data_summary = std::move(summary);
  const auto steps = total_training_steps(o, job.train_samples());
  if (!o.evaluate_only && o.warmup_steps > 0 && o.warmup_steps >= steps)
    throw runtime::input_error("--warmup-steps " + std::to_string(o.warmup_steps) +
                               " must be fewer than the run's " + std::to_string(steps) +
                               " training steps");
  if (job.resume && !o.evaluate_only)
    check_resume_compatible(*job.resume, o, job.topology, job.train_samples());
}

nlohmann::json data_spec(const job_inputs& job) {
  return {{"options", to_json(job.opts)}, {"model", job.topology.model.to_json()}};
}

} // namespace troupe::actors
