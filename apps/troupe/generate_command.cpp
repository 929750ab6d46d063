// `troupe generate`: text from a character language model's checkpoint,
// sampled one byte at a time in this process.

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include "apps/troupe/commands.hpp"
#include "models/layers/sequential.hpp"
#include "models/text_sampling.hpp"
#include "models/train/sequence_loss.hpp"
#include "runtime/error.hpp"
#include "runtime/io/checkpoint.hpp"
#include "runtime/io/text_dataset.hpp"

namespace troupe::apps {

namespace {

struct generate_flags {
  std::string checkpoint;
  std::string prompt;
  std::int64_t tokens = 0;
  std::string data; ///< the training text (its bytes are the vocabulary); default: the checkpoint's
  models::sampling_options sampling;
};

/// The checkpoint's model with its parameters. Throws input_error naming the
/// checkpoint's file for a model that is not a language model or parameters
/// that do not fit it.
models::sequential load_model(const std::string& dir, const runtime::checkpoint& ck,
                              models::model_spec& spec) {
  const auto manifest = (std::filesystem::path(dir) / "manifest.json").string();
  try {
    spec = models::model_spec::from_json(ck.model);
  } catch (const std::exception& e) {
    throw runtime::input_error(manifest + ": model spec: " + e.what());
  }
  if (!models::is_sequence_model(spec))
    throw runtime::input_error(manifest + ": model " + spec.name +
                               " is not a character language model (generate takes the "
                               "transformer; evaluate or predict a classifier)");
  models::sequential net{spec, 0, spec.layers.size(), 0};
  const auto params_file = (std::filesystem::path(dir) / "model.safetensors").string();
  for (auto& [name, p] : net.named_parameters()) {
    auto it = std::find_if(ck.params.begin(), ck.params.end(),
                           [&](const auto& e) { return e.first == name; });
    if (it == ck.params.end() || it->second.shape() != p->value.shape())
      throw runtime::input_error(params_file + ": parameter " + name +
                                 (it == ck.params.end() ? " is missing" : " has the wrong shape"));
    p->value = it->second;
  }
  return net;
}

int run_generate(const generate_flags& f) {
  if (!std::filesystem::is_directory(f.checkpoint))
    throw runtime::input_error("--checkpoint " + f.checkpoint + ": no such directory");
  auto ck = runtime::read_checkpoint(f.checkpoint);
  models::model_spec spec;
  auto net = load_model(f.checkpoint, ck, spec);
  // The vocabulary is the sorted set of the training text's bytes
  // (runtime::text_dataset): read from that text.
  auto data = f.data.empty() ? ck.config.value("data_dir", std::string{}) : f.data;
  const auto context = spec.input_shape.at(0);
  auto text = runtime::text_dataset::load(data, context);
  const auto vocab = models::output_shape(spec).back();
  if (text.vocab_size() > vocab)
    throw runtime::input_error("--data " + data + ": the text has " +
                               std::to_string(text.vocab_size()) + " distinct bytes, the model's " +
                               "vocabulary " + std::to_string(vocab) + ": not its training text");
  if (f.prompt.empty())
    throw runtime::input_error("--prompt: an empty prompt");
  std::vector<std::int32_t> prompt;
  try {
    prompt = text.encode(f.prompt);
  } catch (const runtime::input_error& e) {
    throw runtime::input_error(std::string{"--prompt: "} + e.what() + " (the vocabulary of " +
                               data + ")");
  }
  auto ids = models::generate_tokens(net, context, std::move(prompt), f.tokens, f.sampling);
  std::printf("%s%s\n", f.prompt.c_str(), text.decode(ids).c_str());
  return exit_ok;
}

} // namespace

command_action add_generate_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("generate",
                                 "continue a prompt with a character language model's checkpoint "
                                 "(`train --model transformer`), one sampled byte at a time");
  auto f = std::make_shared<generate_flags>();
  cmd->add_option("--checkpoint", f->checkpoint, "the checkpoint directory")->required();
  cmd->add_option("--prompt", f->prompt, "the text to continue (bytes of the training text)")
      ->required();
  cmd->add_option("--tokens", f->tokens, "bytes to generate")
      ->required()
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1} << 20));
  cmd->add_option("--temperature", f->sampling.temperature,
                  "softmax temperature (0: greedy, always the most likely byte)")
      ->check(CLI::Range(0.0, 100.0))
      ->capture_default_str();
  cmd->add_option("--top-k", f->sampling.top_k, "sample among the k most likely bytes (0: all)")
      ->check(CLI::Range(0, 1 << 20))
      ->capture_default_str();
  cmd->add_option("--seed", f->sampling.seed, "seed of the sampling: the same seed, the same text")
      ->capture_default_str();
  cmd->add_option("--data", f->data,
                  "the training text, whose bytes are the vocabulary (default: the checkpoint's "
                  "--data)");
  return [f] { return run_generate(*f); };
}

} // namespace troupe::apps
