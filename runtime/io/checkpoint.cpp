#include "runtime/io/checkpoint.hpp"

#include <array>
#include <cerrno>
#include <cstring>
#include <system_error>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/error.hpp"
#include "runtime/io/file_util.hpp"
#include "runtime/io/safetensors.hpp"

namespace troupe::runtime {

namespace {

namespace fs = std::filesystem;

constexpr std::size_t max_checkpoint_file = std::size_t{8} << 30;
constexpr std::size_t max_json_file = std::size_t{64} << 20;

/// The files a manifest lists, in the order they are written and moved; the
/// manifest itself always comes after them.
constexpr std::array<const char*, 5> data_files{"model.safetensors", "optimizer.safetensors",
                                                "trainer_state.json", "rng.json",
                                                "data_loader.json"};
constexpr const char* manifest_name = "manifest.json";
constexpr const char* incoming_name = ".incoming";
constexpr const char* committed_name = ".committed";
constexpr const char* lock_name = ".lock";

nlohmann::json file_entry(const fs::path& path) {
  auto bytes = read_file(path, max_checkpoint_file);
  return {
      {"name", path.filename().string()}, {"bytes", bytes.size()}, {"sha256", sha256_hex(bytes)}};
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

/// Whether `p` exists; any error other than "no such entry" is thrown, so a
/// journal that cannot be inspected is never mistaken for an absent one.
bool present(const fs::path& p) {
  struct stat st {};
  if (::lstat(p.c_str(), &st) == 0)
    return true;
  if (errno == ENOENT)
    return false;
  fail_on_file("cannot stat", p, errno);
}

void rename_entry(const fs::path& from, const fs::path& to) {
  if (::rename(from.c_str(), to.c_str()) != 0)
    fail_on_file("cannot rename " + from.string() + " to", to, errno);
}

void remove_tree(const fs::path& p) {
  std::error_code ec;
  fs::remove_all(p, ec);
  if (ec)
    throw input_error("cannot remove " + p.string() + ": " + ec.message());
}

void step_done(const checkpoint_write_hooks& hooks, std::string_view step) {
  if (hooks.after_step)
    hooks.after_step(step);
}

/// An flock on DIR/.lock, held until destruction. Writers hold it exclusively
/// (creating the file); readers hold it shared if the file exists, so they never
/// write and never see a half-moved set. flock locks belong to the open file, so
/// two threads of one process exclude each other as two processes do, and the
/// kernel drops the lock of a process that dies.
class dir_lock {
public:
  dir_lock(const fs::path& dir, bool exclusive) {
    fs::path path = dir / lock_name;
    fd_ = exclusive ? ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666)
                    : ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) {
      if (!exclusive) // no writer ever ran here, or the file is not ours to read
        return;
      fail_on_file("cannot open checkpoint lock", path, errno);
    }
    while (::flock(fd_, exclusive ? LOCK_EX : LOCK_SH) != 0) {
      if (errno == EINTR)
        continue;
      int err = errno;
      ::close(fd_);
      fd_ = -1;
      if (!exclusive)
        return;
      fail_on_file("cannot lock", path, err);
    }
  }
  ~dir_lock() {
    if (fd_ >= 0)
      ::close(fd_);
  }
  dir_lock(const dir_lock&) = delete;
  dir_lock& operator=(const dir_lock&) = delete;

private:
  int fd_ = -1;
};

/// Step 4: moves what is left in DIR/.committed into DIR, manifest last, then
/// removes .committed. Also the roll-forward of a write that crashed here:
/// files already moved are skipped.
void finish_commit(const fs::path& dir, const checkpoint_write_hooks& hooks) {
  const fs::path committed = dir / committed_name;
  for (const char* name : data_files) {
    if (present(committed / name))
      rename_entry(committed / name, dir / name);
    step_done(hooks, std::string{"moved/"} + name);
  }
  // The data files' new names must be durable before the manifest leaves
  // .committed: a reader without a journal trusts DIR's manifest.
  fsync_directory(committed);
  fsync_directory(dir);
  if (present(committed / manifest_name))
    rename_entry(committed / manifest_name, dir / manifest_name);
  fsync_directory(dir);
  step_done(hooks, std::string{"moved/"} + manifest_name);
  remove_tree(committed);
  fsync_directory(dir);
}

/// Step 1: a .committed holding a manifest is a commit a crashed writer did not
/// finish; one without is empty (its manifest already moved) and is removed.
void recover(const fs::path& dir) {
  const fs::path committed = dir / committed_name;
  if (!present(committed))
    return;
  if (present(committed / manifest_name)) {
    finish_commit(dir, {});
  } else {
    remove_tree(committed);
    fsync_directory(dir);
  }
}

/// Step 2: the complete new set in DIR/.incoming, each file fsynced (by
/// write_file_atomically, which also fsyncs .incoming), manifest last.
void write_incoming(const fs::path& dir, const checkpoint& ck,
                    const checkpoint_write_hooks& hooks) {
  const fs::path in = dir / incoming_name;
  remove_tree(in);
  std::error_code ec;
  fs::create_directory(in, ec);
  if (ec)
    throw input_error("cannot create " + in.string() + ": " + ec.message());
  auto write_json = [&](const char* name, const nlohmann::json& j) {
    write_file_atomically(in / name, string_bytes(j.dump(2) + "\n"));
    step_done(hooks, std::string{"incoming/"} + name);
  };
  write_safetensors(in / "model.safetensors", ck.params);
  step_done(hooks, "incoming/model.safetensors");
  write_safetensors(in / "optimizer.safetensors", ck.optimizer_state, ck.optimizer_meta);
  step_done(hooks, "incoming/optimizer.safetensors");
  write_json("trainer_state.json", ck.trainer_state);
  write_json("rng.json", ck.rng);
  write_json("data_loader.json", ck.data_loader);
  nlohmann::json files = nlohmann::json::array();
  for (const char* name : data_files)
    files.push_back(file_entry(in / name));
  nlohmann::json manifest{{"format", "troupe-checkpoint"},
                          {"version", checkpoint_format_version},
                          {"files", files},
                          {"input_normalization", ck.input_normalization.is_null()
                                                      ? input_normalization()
                                                      : ck.input_normalization},
                          {"model", ck.model},
                          {"config", ck.config}};
  write_json(manifest_name, manifest);
}

/// Where each file of the last committed checkpoint lies: in .committed while
/// it holds a manifest and still holds the file, else in DIR.
std::map<std::string, fs::path> committed_paths(const fs::path& dir) {
  const fs::path committed = dir / committed_name;
  const bool journal = present(committed / manifest_name);
  std::map<std::string, fs::path> paths;
  auto locate = [&](const char* name) {
    paths[name] = journal && present(committed / name) ? committed / name : dir / name;
  };
  for (const char* name : data_files)
    locate(name);
  locate(manifest_name);
  return paths;
}

void check_files(const nlohmann::json& manifest, const fs::path& manifest_path,
                 const std::map<std::string, fs::path>& paths) {
  if (manifest.at("format") != "troupe-checkpoint")
    throw input_error(manifest_path.string() + ": not a troupe checkpoint");
  if (manifest.at("version") != checkpoint_format_version)
    throw input_error(manifest_path.string() + ": unsupported version " +
                      manifest.at("version").dump());
  std::map<std::string, nlohmann::json> listed;
  for (const auto& f : manifest.at("files"))
    listed[f.at("name").get<std::string>()] = f;
  for (const char* name : data_files) {
    auto it = listed.find(name);
    if (it == listed.end())
      throw input_error(manifest_path.string() + " does not list " + name);
    auto actual = file_entry(paths.at(name));
    if (actual.at("bytes") != it->second.at("bytes") ||
        actual.at("sha256") != it->second.at("sha256"))
      throw input_error(paths.at(name).string() +
                        " does not match the manifest (size or sha256 differs): the "
                        "checkpoint is corrupt or was modified");
  }
}

} // namespace

nlohmann::json input_normalization() {
  return {{"formula", "x / 255"}, {"scale", 1.0 / 255.0}, {"offset", 0.0}, {"source_dtype", "u8"}};
}

void write_checkpoint(const fs::path& dir, const checkpoint& ck,
                      const checkpoint_write_hooks& hooks) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec || !fs::is_directory(dir))
    throw input_error("checkpoint directory " + dir.string() + " cannot be created: " +
                      (ec ? ec.message() : std::string{"not a directory"}));
  dir_lock lock{dir, true};
  recover(dir);
  write_incoming(dir, ck, hooks);
  // The commit point: from here on a reader sees the new checkpoint.
  rename_entry(dir / incoming_name, dir / committed_name);
  fsync_directory(dir);
  step_done(hooks, "commit");
  finish_commit(dir, hooks);
}

checkpoint read_checkpoint(const fs::path& dir) {
  if (!fs::is_directory(dir))
    throw input_error("checkpoint " + dir.string() + " is not a directory");
  dir_lock lock{dir, false};
  const auto paths = committed_paths(dir);
  const fs::path& manifest_path = paths.at(manifest_name);
  auto manifest = parse_json_file(manifest_path);
  try {
    check_files(manifest, manifest_path, paths);
    checkpoint ck;
    ck.params = read_safetensors(paths.at("model.safetensors")).tensors;
    auto opt = read_safetensors(paths.at("optimizer.safetensors"));
    ck.optimizer_state = std::move(opt.tensors);
    ck.optimizer_meta = std::move(opt.metadata);
    ck.trainer_state = parse_json_file(paths.at("trainer_state.json"));
    ck.rng = parse_json_file(paths.at("rng.json"));
    ck.data_loader = parse_json_file(paths.at("data_loader.json"));
    ck.model = manifest.at("model");
    ck.config = manifest.at("config");
    ck.input_normalization = manifest.value("input_normalization", nlohmann::json{});
    return ck;
  } catch (const nlohmann::json::exception& e) {
    throw input_error(manifest_path.string() + ": " + e.what());
  }
}

} // namespace troupe::runtime
