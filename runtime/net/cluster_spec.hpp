#pragma once

// Where the nodes of a cluster are and what they hold. Two input forms:
//
// TensorFlow's TF_CONFIG, so existing launch scripts work unchanged:
//   {"cluster": {"chief": ["h0:2222"], "worker": ["h1:2222", ...], "ps": [...]},
//    "task": {"type": "worker", "index": 1}}
// Nodes are named "<job>:<index>" ("worker:1") with the job as their role.
//
// troupe's own form, with devices per node:
//   {"supervisor": "h0:7000",
//    "nodes": [{"name": "n0", "address": "h0:7001",
//               "devices": [{"kind": "cpu", "cores": 2}, {"kind": "cuda", "index": 0}],
//               "roles": ["worker", "ps"],
//               "data_paths": {"/data/mnist": "/mnt/nfs/mnist"}}],
//    "self": "n0"}
//
// Everything is validated on parsing; errors are input_error naming the field.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "runtime/device.hpp"

namespace troupe::runtime {

struct host_port {
  std::string host; ///< a host name, IPv4 address, or IPv6 address without brackets
  std::uint16_t port = 0;
  std::string to_string() const;
  friend bool operator==(const host_port&, const host_port&) = default;
};

/// Parses "host:port" / "[v6addr]:port"; port 1..65535. `field` names the
/// input in the error message.
host_port parse_host_port(std::string_view text, std::string_view field);

struct node_device {
  device_kind kind = device_kind::cpu;
  int cores = 1; ///< cpu: worker threads; unused for cuda
  int index = 0; ///< cuda: device ordinal; 0 for cpu
};

struct cluster_node {
  std::string name;
  host_port address;
  std::vector<node_device> devices; ///< empty when the spec does not say (TF_CONFIG)
  std::vector<std::string> roles;   ///< "chief", "worker", "ps", "evaluator"
  /// Where the files jobs name are on this node, when elsewhere: a path
  /// prefix FROM read as TO (the node's --data-path FROM=TO).
  std::vector<std::pair<std::string, std::string>> data_paths;
};

/// Reads an environment variable; injectable for tests.
using env_getter = std::function<std::optional<std::string>(const std::string&)>;
/// std::getenv.
std::optional<std::string> process_env(const std::string& name);

/// Rank and world size handed out by a launcher.
struct launcher_rank_info {
  int rank = 0;
  int size = 1;
  std::string source; ///< "mpirun", "pmi" or "slurm"
};

/// Rank and size from OMPI_COMM_WORLD_RANK/SIZE (mpirun), PMI_RANK/PMI_SIZE
/// (MPICH/Hydra), or SLURM_PROCID/SLURM_NTASKS (srun), first found wins;
/// nullopt when none is set. Throws input_error for a non-numeric value, a
/// missing partner variable, or rank outside [0, size).
std::optional<launcher_rank_info> launcher_rank(const env_getter& env = process_env);

class cluster_spec {
public:
  /// Parses either form (TF_CONFIG when the object has "cluster", troupe's
  /// when it has "nodes").
  static cluster_spec parse(std::string_view json_text);
  /// The TF_CONFIG environment variable, if set.
  static std::optional<cluster_spec> from_tf_config_env(const env_getter& env = process_env);

  const std::vector<cluster_node>& nodes() const noexcept { return nodes_; }
  const std::optional<host_port>& supervisor() const noexcept { return supervisor_; }
  /// This process's node name, when the spec says (TF_CONFIG task, "self").
  const std::optional<std::string>& self() const noexcept { return self_; }
  /// TF_CONFIG task type and index (the evaluator may be outside "cluster").
  const std::optional<std::string>& task_type() const noexcept { return task_type_; }
  int task_index() const noexcept { return task_index_; }

  std::size_t world_size() const noexcept { return nodes_.size(); }
  const cluster_node* find(std::string_view name) const noexcept;
  /// Nodes holding `role`, in spec order.
  std::vector<const cluster_node*> with_role(std::string_view role) const;

private:
  static cluster_spec parse_tf_config(const nlohmann::json& root);
  static cluster_spec parse_troupe(const nlohmann::json& root);

  std::vector<cluster_node> nodes_;
  std::optional<host_port> supervisor_;
  std::optional<std::string> self_;
  std::optional<std::string> task_type_;
  int task_index_ = 0;
};

} // namespace troupe::runtime
