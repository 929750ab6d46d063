#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/tensor.hpp"

namespace troupe::runtime {

using named_tensor_list = std::vector<std::pair<std::string, tensor>>;

/// A training checkpoint. On disk, a directory of separate files, each written
/// atomically (temp file + rename), the manifest last, so a crash leaves either
/// the old checkpoint or the new one, never a mix:
///
///   model.safetensors      parameters only, F32, row-major, names like "0.weight"
///   optimizer.safetensors  optimizer state ("0.weight.exp_avg", ...); metadata
///                          holds the optimizer type and step count
///   trainer_state.json     global step, epoch, loss accumulators of the epoch
///   rng.json               seed and the counter-based stream keys in use
///   data_loader.json       position (epoch, batch index), batch, shuffle
///   manifest.json          format/version, file list with sizes and sha256,
///                          input normalisation, model spec, full config
struct checkpoint {
  named_tensor_list params;
  named_tensor_list optimizer_state;
  std::map<std::string, std::string> optimizer_meta;
  nlohmann::json trainer_state = nlohmann::json::object();
  nlohmann::json rng = nlohmann::json::object();
  nlohmann::json data_loader = nlohmann::json::object();
  nlohmann::json model = nlohmann::json::object();
  nlohmann::json config = nlohmann::json::object();
};

inline constexpr int checkpoint_format_version = 1;

/// Writes `ck` into `dir` (created if missing). Throws input_error naming the
/// path when the directory cannot be created or written.
void write_checkpoint(const std::filesystem::path& dir, const checkpoint& ck);

/// Reads and verifies a checkpoint: manifest format and version, every listed
/// file present with the recorded size and sha256, tensors well formed. Throws
/// input_error naming the file and the problem.
checkpoint read_checkpoint(const std::filesystem::path& dir);

/// The input normalisation recorded in manifests (x / 255 for u8 images).
nlohmann::json input_normalization();

} // namespace troupe::runtime
