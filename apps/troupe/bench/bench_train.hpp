#pragma once

// `troupe bench train`: training steps/s of troupe against libtorch, and with
// --dp N against one replica and PyTorch DDP (see bench_train.cpp).

#include <CLI/CLI.hpp>

#include "apps/troupe/commands.hpp"

namespace troupe::apps {

/// Registers `train` under `bench`; the action runs it.
command_action add_bench_train_command(CLI::App& bench);

} // namespace troupe::apps
