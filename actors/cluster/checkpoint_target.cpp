#include "actors/cluster/checkpoint_target.hpp"

#include <filesystem>
#include <fstream>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "runtime/error.hpp"

namespace troupe::actors {

namespace {

namespace fs = std::filesystem;

/// The JSON file `dir/name`, taken from a crashed write's .committed first
/// (as runtime::read_checkpoint does); null when there is none.
nlohmann::json read_part(const fs::path& dir, const std::string& name) {
  for (const auto& p : {dir / ".committed" / name, dir / name}) {
    std::error_code ec;
    if (!fs::exists(p, ec))
      continue;
    std::ifstream in{p};
    return nlohmann::json::parse(in); // throws for a torn or foreign file
  }
  return nullptr;
}

bool same_directory(const std::string& a, const std::string& b) {
  std::error_code ec;
  return !a.empty() && !b.empty() && (a == b || fs::equivalent(a, b, ec));
}

/// The topology flags whose values differ from the checkpoint's config, as
/// "--pp 2 (the checkpoint has 1)", comma-separated.
std::string topology_differences(const nlohmann::json& cfg, const train_options& o) {
  std::string r;
  auto compare = [&](const char* flag, const char* key, int now, int absent) {
    const int then = cfg.value(key, absent);
    if (then == now)
      return;
    if (!r.empty())
      r += ", ";
    r += fmt::format("{} {} (the checkpoint has {})", flag, now, then);
  };
  compare("--pp", "stages", o.stages, 1);
  compare("--dp", "dp", o.dp, 1);
  compare("--tp", "tp", o.tp, 1);
  compare("--virtual-stages", "virtual_stages", o.virtual_stages, 1);
  compare("--ps", "ps", o.ps, 0);
  return r;
}

} // namespace

void check_checkpoint_target(const train_options& opts, const plan& topology) {
  const auto& dir = opts.checkpoint_dir;
  if (dir.empty() || opts.overwrite || same_directory(dir, opts.resume_dir))
    return;
  const std::string where = "--checkpoint " + dir + " ";
  nlohmann::json manifest, state;
  try {
    manifest = read_part(dir, "manifest.json");
    if (manifest.is_null())
      return; // no checkpoint there (empty, or other files): nothing to lose
    state = read_part(dir, "trainer_state.json");
  } catch (const nlohmann::json::exception&) {
    throw runtime::input_error(where + "holds a checkpoint that cannot be read: pass --overwrite "
                                       "to replace it");
  }
  const auto cfg = manifest.value("config", nlohmann::json::object());
  const auto step = state.is_object() ? state.value("global_step", std::int64_t{-1}) : -1;
  const auto its_model = cfg.value("model", std::string{"?"});
  if (manifest.value("model", nlohmann::json{}) != topology.model.to_json())
    throw runtime::input_error(where + "holds a checkpoint of another model (" + its_model +
                               ", not --model " + opts.model +
                               "): pass --overwrite to replace it, or choose another directory");
  if (auto diff = topology_differences(cfg, opts); !diff.empty())
    throw runtime::input_error(where + "holds a checkpoint of another topology: " + diff +
                               "; pass --overwrite to replace it, or choose another directory");
  throw runtime::input_error(where +
                             "already holds a checkpoint of this model and topology (step " +
                             std::to_string(step) + "): pass --resume " + dir +
                             " to continue or --overwrite to replace it");
}

} // namespace troupe::actors
