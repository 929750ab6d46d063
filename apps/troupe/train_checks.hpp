#pragma once

// `troupe train`'s checks before anything runs: the paths it will write, flags
// a saved plan overrides or that do nothing, the data a model needs, and more
// devices than cores. Each refusal is a runtime::input_error (exit 2) naming
// the flag; a run that would train for hours must not fail at its end.

#include <string>

#include <CLI/CLI.hpp>

#include "apps/troupe/train_flags.hpp"

namespace troupe::apps {

/// The files the client itself writes (--report, --metrics-csv) and, for a
/// run in this process (`local`), the ones the job writes (--trace,
/// --checkpoint): creates nothing.
void check_train_outputs(const training_flags& f, const std::string& report,
                         const std::string& metrics_csv, bool local);

/// Flags the user gave (cmd's counts) that --plan's topology fixes to other
/// values: "--dp 4 conflicts with plan.json's 2 replicas: drop --dp or edit
/// the plan". Call after finish_training_flags (f.opts.plan is read).
void check_plan_flags(const CLI::App& cmd, const training_flags& f);

/// Flags that do nothing in the chosen mode: --schedule interleaved without
/// --virtual-stages (its chunks), and a language model without --data (it
/// would read the MNIST default as text).
void check_mode_flags(const CLI::App& cmd, const training_flags& f);

/// A run in this process with more devices than cores: one warning on
/// stderr with both counts (each device has a compute thread of its own).
void warn_oversubscription(const training_flags& f, unsigned cores);

} // namespace troupe::apps
