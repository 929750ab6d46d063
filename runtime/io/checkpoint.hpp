#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/tensor.hpp"

namespace troupe::runtime {

using named_tensor_list = std::vector<std::pair<std::string, tensor>>;

/// A training checkpoint. On disk, a directory of separate files:
///
///   model.safetensors      parameters only, F32, row-major, names like "0.weight"
///   optimizer.safetensors  optimizer state ("0.weight.exp_avg", ...); metadata
///                          holds the optimizer type and step count
///   trainer_state.json     global step, epoch, loss accumulators of the epoch
///   rng.json               seed and the counter-based stream keys in use
///   data_loader.json       position (epoch, batch index), batch, shuffle
///   manifest.json          format/version, file list with sizes and sha256,
///                          input normalisation, model spec, full config
///
/// A write is journaled so that a crash at any point leaves the last good
/// checkpoint readable (issue 14). Under an exclusive flock on DIR/.lock, the
/// writer (1) rolls forward a DIR/.committed left by a crashed write, (2) writes
/// the whole new set into DIR/.incoming (each file fsynced, manifest last),
/// (3) renames .incoming to DIR/.committed: the commit point, (4) moves each
/// file from .committed into DIR (manifest last) and removes .committed. A
/// reader takes the files still in .committed from there and the rest from
/// DIR while .committed holds a manifest, else everything from DIR; .incoming
/// is ignored. A finished checkpoint is the six files above in DIR (plus an
/// empty .lock), as before.
struct checkpoint {
  named_tensor_list params;
  named_tensor_list optimizer_state;
  std::map<std::string, std::string> optimizer_meta;
  nlohmann::json trainer_state = nlohmann::json::object();
  nlohmann::json rng = nlohmann::json::object();
  nlohmann::json data_loader = nlohmann::json::object();
  nlohmann::json model = nlohmann::json::object();
  nlohmann::json config = nlohmann::json::object();
  /// How inputs were normalised (the manifest's input_normalization); null:
  /// the default, input_normalization().
  nlohmann::json input_normalization = nullptr;
};

inline constexpr int checkpoint_format_version = 1;

/// Test-only observation of a write: `after_step` is called with a name after
/// each durable step ("incoming/<file>", "commit", "moved/<file>"), so a test
/// can kill the writer there. Empty in production.
struct checkpoint_write_hooks {
  std::function<void(std::string_view step)> after_step;
};

/// Writes `ck` into `dir` (created if missing) by the journaled protocol above,
/// waiting for any other writer of `dir` (thread or process) to finish first.
/// Throws input_error naming the path when the directory cannot be created or
/// written.
void write_checkpoint(const std::filesystem::path& dir, const checkpoint& ck,
                      const checkpoint_write_hooks& hooks = {});

/// Reads and verifies a checkpoint (the last committed one; never writes, waits
/// for a writer holding DIR/.lock): manifest format and version, every listed
/// file present with the recorded size and sha256, tensors well formed. Throws
/// input_error naming the file and the problem.
checkpoint read_checkpoint(const std::filesystem::path& dir);

/// The input normalisation recorded in manifests (x / 255 for u8 images).
nlohmann::json input_normalization();

} // namespace troupe::runtime
