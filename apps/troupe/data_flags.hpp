#pragma once

#include <CLI/CLI.hpp>

#include "actors/plan/train_options.hpp"

namespace troupe::apps {

/// The data flags of `troupe train` (docs/data.md): --test-data, --holdout,
/// --x-name, --y-name, --normalize, --loss (parsed into its enum here).
void add_data_flags(CLI::App* cmd, actors::train_options& o);

} // namespace troupe::apps
