#pragma once

// The data of a job: read from the files its options name (docs/data.md) or
// given by a library caller, normalised as asked, its loss chosen, and checked
// against the model before any step runs. The same reading runs in the
// supervisor (--data-from supervisor, single-process jobs) and on every node
// that hosts a replica's loader (node_data.hpp), so both see the same data;
// a summary (sizes, resolved loss, normalisation, content digest) is all the
// supervisor needs of data read elsewhere.

#include <cstdint>
#include <optional>

#include <nlohmann/json.hpp>

#include "actors/pipeline/dataset.hpp"
#include "actors/plan/train_options.hpp"
#include "models/layers/model_spec.hpp"

namespace troupe::actors {

/// A job's data sets and how its loaders feed them.
struct job_datasets {
  dataset train_set;
  dataset test_set;          ///< empty unless evaluated (or a language model's held-out text)
  input_transform transform; ///< the loaders' input normalisation
  bool real_targets = false; ///< an mse loss: targets as f32 [n, K]
  loss_kind loss = loss_kind::automatic; ///< resolved (a language model's stays as asked)
  bool evaluate = false;                 ///< opts.evaluate, off without a test set
};

/// Reads the files of `opts` (--data, --test-data, --holdout; a language
/// model's text) for `model`, or takes run_training's `train` / `test`.
/// Throws runtime::input_error naming the file (or data set), the array and
/// what does not fit the model.
job_datasets read_job_data(const train_options& opts, const models::model_spec& model,
                           std::optional<dataset> train = std::nullopt,
                           std::optional<dataset> test = std::nullopt);

/// What the supervisor needs of data read on a node: {"train_samples",
/// "test_samples", "loss", "evaluate", "real_targets", "normalization" (the
/// transform's description), "train_name", "digest"}. The digest covers every
/// sample and target of both sets, so nodes holding different files differ
/// (`digest` false: left out, for data read in one place only).
nlohmann::json summarize(const job_datasets& d, bool digest = true);

/// `a` and `b` describe the same data (sizes, loss, normalisation, digest).
bool same_data(const nlohmann::json& a, const nlohmann::json& b);

} // namespace troupe::actors
