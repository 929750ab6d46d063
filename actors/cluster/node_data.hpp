#pragma once

// A node's copy of its job's data: each replica's loader reads the data on
// the node of its first stage (--data-from nodes), through the node's path
// map (--data-path FROM=TO, or "data_paths" in the cluster spec) when the
// files live elsewhere there. Change it with how nodes find or keep data.

#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "actors/cluster/job_data.hpp"

namespace troupe::actors {

/// One path prefix replaced by another: a job's FROM/x is read at TO/x here.
struct data_path_map_entry {
  std::string from;
  std::string to;
};
using data_path_map = std::vector<data_path_map_entry>;

/// Parses "FROM=TO" (both non-empty); throws runtime::input_error naming `text`.
data_path_map_entry parse_data_path(const std::string& text);

/// `path` with the first entry of `map` whose FROM is a whole-component
/// prefix of it replaced by its TO; `path` itself when none is.
std::string map_data_path(const data_path_map& map, const std::string& path);

/// A job's data as one node read it, and what the supervisor compares.
struct node_job_data {
  job_datasets data;
  nlohmann::json summary; ///< summarize(data), plus "paths": the files read here
};

/// The data a node holds for its job: read once, shared by every loader the
/// node spawns for it (the replicas on one node share the bytes). It keeps
/// the data of one job spec at a time; a new spec replaces it. Thread-safe:
/// reads run off the agent's thread.
class node_data {
public:
  node_data(std::string node, data_path_map map);

  /// The data `spec` (job_inputs.hpp's data_spec) names, read on this node
  /// now or before. Throws runtime::input_error naming the node, the path
  /// here and what is wrong.
  std::shared_ptr<const node_job_data> get(const nlohmann::json& spec);

  const std::string& node() const { return node_; }

private:
  std::string node_;
  data_path_map map_;
  std::mutex mu_;
  std::string key_;
  std::shared_ptr<const node_job_data> data_;
};

} // namespace troupe::actors
