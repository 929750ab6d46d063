#include "actors/cluster/node_data.hpp"

#include <filesystem>

#include "runtime/error.hpp"

namespace troupe::actors {

namespace {

namespace fs = std::filesystem;

/// `prefix` is `path` or a leading run of its components.
bool is_path_prefix(const std::string& prefix, const std::string& path) {
  auto p = fs::path(prefix).lexically_normal();
  auto q = fs::path(path).lexically_normal();
  auto pi = p.begin();
  auto qi = q.begin();
  for (; pi != p.end() && qi != q.end(); ++pi, ++qi)
    if (*pi != *qi)
      break;
  // A trailing separator leaves an empty last component.
  return pi == p.end() || (std::next(pi) == p.end() && pi->empty());
}

} // namespace

data_path_map_entry parse_data_path(const std::string& text) {
  const auto eq = text.find('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == text.size())
    throw runtime::input_error("--data-path '" + text +
                               "': want FROM=TO (a path jobs name, and where it is on this node)");
  return {text.substr(0, eq), text.substr(eq + 1)};
}

std::string map_data_path(const data_path_map& map, const std::string& path) {
  if (path.empty())
    return path;
  for (const auto& e : map)
    if (is_path_prefix(e.from, path)) {
      auto rest =
          fs::path(path).lexically_normal().lexically_relative(fs::path(e.from).lexically_normal());
      return rest.empty() || rest == "." ? e.to : (fs::path(e.to) / rest).string();
    }
  return path;
}

node_data::node_data(std::string node, data_path_map map)
    : node_(std::move(node)), map_(std::move(map)) {}

std::shared_ptr<const node_job_data> node_data::get(const nlohmann::json& spec) {
  std::lock_guard<std::mutex> lock{mu_};
  auto key = spec.dump();
  if (data_ && key == key_)
    return data_;
  data_.reset(); // the old job's data goes before the new one is read
  key_.clear();
  auto opts = train_options_from_json(spec.at("options"));
  auto model = models::model_spec::from_json(spec.at("model"));
  nlohmann::json paths = nlohmann::json::object();
  for (auto* p : {&opts.data_dir, &opts.test_data}) {
    auto here = map_data_path(map_, *p);
    if (here != *p)
      paths[*p] = here;
    *p = std::move(here);
  }
  auto d = std::make_shared<node_job_data>();
  try {
    d->data = read_job_data(opts, model);
  } catch (const runtime::input_error& e) {
    std::string mapped;
    for (const auto& [from, to] : paths.items())
      mapped += ", " + from + " read as " + to.get<std::string>();
    throw runtime::input_error("node " + node_ + " reads the job's data itself (--data-from " +
                               "nodes" + mapped + "): " + e.what());
  }
  d->summary = summarize(d->data);
  d->summary["paths"] = paths;
  data_ = std::move(d);
  key_ = std::move(key);
  return data_;
}

} // namespace troupe::actors
