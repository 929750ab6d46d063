#include "runtime/io/checkpoint.hpp"

#include <system_error>

#include "runtime/error.hpp"
#include "runtime/io/file_util.hpp"
#include "runtime/io/safetensors.hpp"

namespace troupe::runtime {

namespace {

namespace fs = std::filesystem;

constexpr std::size_t max_checkpoint_file = std::size_t{8} << 30;
constexpr std::size_t max_json_file = std::size_t{64} << 20;

std::span<const std::byte> as_bytes(const std::string& s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

nlohmann::json file_entry(const fs::path& dir, const std::string& name) {
  auto bytes = read_file(dir / name, max_checkpoint_file);
  return {{"name", name}, {"bytes", bytes.size()}, {"sha256", sha256_hex(bytes)}};
}

nlohmann::json parse_json_file(const fs::path& path) {
  auto bytes = read_file(path, max_json_file);
  try {
    return nlohmann::json::parse(reinterpret_cast<const char*>(bytes.data()),
                                 reinterpret_cast<const char*>(bytes.data()) + bytes.size());
  } catch (const nlohmann::json::exception& e) {
    throw input_error(path.string() + ": not valid JSON: " + e.what());
  }
}

} // namespace

nlohmann::json input_normalization() {
  return {{"formula", "x / 255"}, {"scale", 1.0 / 255.0}, {"offset", 0.0},
          {"source_dtype", "u8"}};
}

void write_checkpoint(const fs::path& dir, const checkpoint& ck) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec || !fs::is_directory(dir))
    throw input_error("checkpoint directory " + dir.string() + " cannot be created: " +
                      (ec ? ec.message() : std::string{"not a directory"}));
  write_safetensors(dir / "model.safetensors", ck.params);
  write_safetensors(dir / "optimizer.safetensors", ck.optimizer_state, ck.optimizer_meta);
  auto write_json = [&](const char* name, const nlohmann::json& j) {
    write_file_atomically(dir / name, as_bytes(j.dump(2) + "\n"));
  };
  write_json("trainer_state.json", ck.trainer_state);
  write_json("rng.json", ck.rng);
  write_json("data_loader.json", ck.data_loader);
  nlohmann::json files = nlohmann::json::array();
  for (const char* name : {"model.safetensors", "optimizer.safetensors", "trainer_state.json",
                           "rng.json", "data_loader.json"})
    files.push_back(file_entry(dir, name));
  nlohmann::json manifest{{"format", "troupe-checkpoint"},
                          {"version", checkpoint_format_version},
                          {"files", files},
                          {"input_normalization", input_normalization()},
                          {"model", ck.model},
                          {"config", ck.config}};
  // The manifest goes last: a checkpoint without one (or with an old one that
  // does not match the files) is rejected on resume.
  write_json("manifest.json", manifest);
}

checkpoint read_checkpoint(const fs::path& dir) {
  if (!fs::is_directory(dir))
    throw input_error("checkpoint " + dir.string() + " is not a directory");
  auto manifest = parse_json_file(dir / "manifest.json");
  try {
    if (manifest.at("format") != "troupe-checkpoint")
      throw input_error(dir.string() + "/manifest.json: not a troupe checkpoint");
    if (manifest.at("version") != checkpoint_format_version)
      throw input_error(dir.string() + "/manifest.json: unsupported version " +
                        manifest.at("version").dump());
    std::map<std::string, nlohmann::json> listed;
    for (const auto& f : manifest.at("files"))
      listed[f.at("name").get<std::string>()] = f;
    for (const char* name : {"model.safetensors", "optimizer.safetensors", "trainer_state.json",
                             "rng.json", "data_loader.json"}) {
      auto it = listed.find(name);
      if (it == listed.end())
        throw input_error(dir.string() + "/manifest.json does not list " + name);
      auto actual = file_entry(dir, name);
      if (actual.at("bytes") != it->second.at("bytes") ||
          actual.at("sha256") != it->second.at("sha256"))
        throw input_error(dir.string() + "/" + name +
                          " does not match the manifest (size or sha256 differs): the "
                          "checkpoint is corrupt or was modified");
    }
    checkpoint ck;
    ck.params = read_safetensors(dir / "model.safetensors").tensors;
    auto opt = read_safetensors(dir / "optimizer.safetensors");
    ck.optimizer_state = std::move(opt.tensors);
    ck.optimizer_meta = std::move(opt.metadata);
    ck.trainer_state = parse_json_file(dir / "trainer_state.json");
    ck.rng = parse_json_file(dir / "rng.json");
    ck.data_loader = parse_json_file(dir / "data_loader.json");
    ck.model = manifest.at("model");
    ck.config = manifest.at("config");
    return ck;
  } catch (const nlohmann::json::exception& e) {
    throw input_error(dir.string() + "/manifest.json: " + e.what());
  }
}

} // namespace troupe::runtime
