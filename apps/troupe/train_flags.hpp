#pragma once

#include <string>

#include <CLI/CLI.hpp>

#include "actors/plan/train_options.hpp"

namespace troupe::apps {

/// Flags of `troupe train`, also used by `troupe bench train`. `schedule` and
/// `ps_mode` are filled as text and parsed by finish_training_flags.
struct training_flags {
  actors::train_options opts;
  std::string schedule = "gpipe";
  std::string ps_mode = "sync";
  std::string balance = "auto";
  bool no_eval = false;
  bool no_progress = false;
  double bucket_mb = 25.0;  ///< --bucket-mb, into opts.bucket_bytes
  double ps_split_mb = 1.0; ///< --ps-split-mb, into opts.ps_split_bytes
  int workers = 0;          ///< --workers: with --ps, the same as --dp
  std::string plan_file;    ///< --plan FILE: read into opts.plan
};

void add_training_flags(CLI::App* cmd, training_flags& f);

/// Copies the text flags into f.opts and validates them (runtime::input_error).
void finish_training_flags(training_flags& f);

} // namespace troupe::apps
