#include "apps/troupe/data_flags.hpp"

#include <string>

namespace troupe::apps {

void add_data_flags(CLI::App* cmd, actors::train_options& o) {
  cmd->add_option("--test-data", o.test_data,
                  "a separate test file (same format rules as --data), evaluated after each epoch");
  cmd->add_option("--holdout", o.holdout,
                  "hold out this last fraction of the --data file as the test set (e.g. 0.1)")
      ->check(CLI::Range(0.0, 0.99));
  cmd->add_option("--x-name", o.x_name, "the inputs array of an .npz/.safetensors file")
      ->capture_default_str();
  cmd->add_option("--y-name", o.y_name,
                  "the targets array of an .npz/.safetensors file, or a CSV's target column")
      ->capture_default_str();
  cmd->add_option(
      "--normalize", o.normalize,
      "input normalisation: none | auto (per-feature mean/std of the training split) "
      "| D (x / D, e.g. 255) | MEAN,STD; default: x / 255 for u8 IDX images, else none");
  cmd->add_option_function<std::string>(
         "--loss", [&o](const std::string& s) { o.loss = actors::parse_loss_kind(s); },
         "cross_entropy | mse | sequence; default: cross_entropy for integer labels, mse for "
         "real-valued targets, sequence for --model transformer")
      ->check(CLI::IsMember({"auto", "cross_entropy", "mse", "sequence"}));
  cmd->add_option_function<std::string>(
         "--data-from", [&o](const std::string& s) { o.data_from = actors::parse_data_source(s); },
         "with --supervisor: nodes (each replica's loader reads the data on the node of its "
         "first stage; the default) | supervisor (the supervisor reads every input and ships "
         "it to the nodes)")
      ->check(CLI::IsMember({"nodes", "supervisor"}));
}

} // namespace troupe::apps
