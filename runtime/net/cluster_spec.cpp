#include "runtime/net/cluster_spec.hpp"

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <limits>
#include <set>

#include <nlohmann/json.hpp>

#include "runtime/error.hpp"

namespace troupe::runtime {

namespace {

using json = nlohmann::json;

[[noreturn]] void bad(std::string_view field, const std::string& what) {
  throw input_error("cluster spec: " + std::string{field} + ": " + what);
}

constexpr std::string_view tf_jobs[] = {"chief", "worker", "ps", "evaluator"};

bool known_role(std::string_view r) {
  return std::find(std::begin(tf_jobs), std::end(tf_jobs), r) != std::end(tf_jobs);
}

bool valid_host(std::string_view h) {
  if (h.empty() || h.size() > 253)
    return false;
  for (char c : h)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
          c == '-' || c == '_'))
      return false;
  return h.front() != '-' && h.front() != '.';
}

bool valid_v6(std::string_view h) {
  if (h.size() < 2 || h.size() > 45)
    return false;
  for (char c : h)
    if (!((c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || (c >= '0' && c <= '9') || c == ':' ||
          c == '.'))
      return false;
  return h.find(':') != std::string_view::npos;
}

bool valid_node_name(std::string_view n) {
  if (n.empty() || n.size() > 64)
    return false;
  return std::all_of(n.begin(), n.end(), [](char c) { return c > 0x20 && c < 0x7f; });
}

const json& member(const json& obj, const char* key, std::string_view field) {
  auto it = obj.find(key);
  if (it == obj.end())
    bad(field, std::string{"missing \""} + key + "\"");
  return *it;
}

std::string string_of(const json& v, std::string_view field) {
  if (!v.is_string())
    bad(field, "expected a string, got " + v.dump());
  return v.get<std::string>();
}

int int_of(const json& v, std::string_view field, int lo, int hi) {
  if (!v.is_number_integer())
    bad(field, "expected an integer, got " + v.dump());
  auto x = v.get<std::int64_t>();
  if (x < lo || x > hi)
    bad(field,
        std::to_string(x) + " is out of range " + std::to_string(lo) + ".." + std::to_string(hi));
  return static_cast<int>(x);
}

void only_keys(const json& obj, std::initializer_list<std::string_view> allowed,
               std::string_view field) {
  for (auto it = obj.begin(); it != obj.end(); ++it)
    if (std::find(allowed.begin(), allowed.end(), it.key()) == allowed.end())
      bad(field, "unknown key \"" + it.key() + "\"");
}

/// Strict decimal: digits only, no sign, no spaces, fits in int.
std::optional<int> parse_decimal(std::string_view s) {
  if (s.empty() || s.size() > 10)
    return std::nullopt;
  int v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || p != s.data() + s.size() || s.front() == '-' || s.front() == '+')
    return std::nullopt;
  return v;
}

} // namespace

std::string host_port::to_string() const {
  if (host.find(':') != std::string::npos)
    return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

host_port parse_host_port(std::string_view text, std::string_view field) {
  std::string t{text};
  host_port hp;
  std::string_view port_text;
  if (text.starts_with('[')) {
    auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
      bad(field, "\"" + t + "\" is not [ipv6]:port");
    hp.host = std::string{text.substr(1, close - 1)};
    if (!valid_v6(hp.host))
      bad(field, "\"" + t + "\" has a malformed IPv6 address");
    port_text = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos)
      bad(field, "\"" + t + "\" is not host:port");
    hp.host = std::string{text.substr(0, colon)};
    if (!valid_host(hp.host))
      bad(field, "\"" + t + "\" has a malformed host (IPv6 addresses need [brackets])");
    port_text = text.substr(colon + 1);
  }
  auto port = parse_decimal(port_text);
  if (!port)
    bad(field, "\"" + t + "\" has a malformed port");
  if (*port < 1 || *port > 65535)
    bad(field, "\"" + t + "\": port " + std::to_string(*port) + " is out of range 1..65535");
  hp.port = static_cast<std::uint16_t>(*port);
  return hp;
}

std::optional<std::string> process_env(const std::string& name) {
  if (const char* v = std::getenv(name.c_str()))
    return std::string{v};
  return std::nullopt;
}

std::optional<launcher_rank_info> launcher_rank(const env_getter& env) {
  struct source {
    const char* rank;
    const char* size;
    const char* name;
  };
  static constexpr source sources[] = {
      {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "mpirun"},
      {"PMI_RANK", "PMI_SIZE", "pmi"},
      {"SLURM_PROCID", "SLURM_NTASKS", "slurm"},
  };
  for (const auto& s : sources) {
    auto rank = env(s.rank);
    auto size = env(s.size);
    if (!rank && !size)
      continue;
    if (!rank || !size)
      throw input_error(std::string{"launcher environment: "} + (rank ? s.size : s.rank) +
                        " is missing while " + (rank ? s.rank : s.size) + " is set");
    auto r = parse_decimal(*rank);
    if (!r)
      throw input_error(std::string{"launcher environment: "} + s.rank + "=\"" + *rank +
                        "\" is not a non-negative integer");
    auto n = parse_decimal(*size);
    if (!n || *n < 1)
      throw input_error(std::string{"launcher environment: "} + s.size + "=\"" + *size +
                        "\" is not a positive integer");
    if (*r >= *n)
      throw input_error(std::string{"launcher environment: "} + s.rank + "=" + *rank +
                        " is not below " + s.size + "=" + *size);
    return launcher_rank_info{*r, *n, s.name};
  }
  return std::nullopt;
}

cluster_spec cluster_spec::parse(std::string_view json_text) {
  json root;
  try {
    root = json::parse(json_text);
  } catch (const json::parse_error& e) {
    throw input_error(std::string{"cluster spec: not valid JSON: "} + e.what());
  }
  if (!root.is_object())
    throw input_error("cluster spec: expected a JSON object");
  if (root.contains("cluster"))
    return parse_tf_config(root);
  if (root.contains("nodes"))
    return parse_troupe(root);
  throw input_error("cluster spec: expected \"cluster\" (TF_CONFIG) or \"nodes\" (troupe form)");
}

std::optional<cluster_spec> cluster_spec::from_tf_config_env(const env_getter& env) {
  auto text = env("TF_CONFIG");
  if (!text)
    return std::nullopt;
  try {
    return parse(*text);
  } catch (const input_error& e) {
    throw input_error(std::string{"TF_CONFIG: "} + e.what());
  }
}

cluster_spec cluster_spec::parse_tf_config(const json& root) {
  only_keys(root, {"cluster", "task", "environment", "rpc_layer"}, "TF_CONFIG");
  const auto& cluster = root.at("cluster");
  if (!cluster.is_object() || cluster.empty())
    bad("cluster", "expected an object of jobs");
  cluster_spec spec;
  std::set<std::pair<std::string, std::uint16_t>> seen;
  // Jobs in a fixed order (chief, worker, ps, evaluator) so node order does
  // not depend on the JSON's key order.
  for (auto it = cluster.begin(); it != cluster.end(); ++it)
    if (!known_role(it.key()))
      bad("cluster", "unknown job \"" + it.key() + "\" (expected chief, worker, ps, evaluator)");
  for (auto job : tf_jobs) {
    auto it = cluster.find(std::string{job});
    if (it == cluster.end())
      continue;
    std::string field = "cluster." + std::string{job};
    if (!it->is_array() || it->empty())
      bad(field, "expected a non-empty array of \"host:port\"");
    if ((job == "chief" || job == "evaluator") && it->size() > 1)
      bad(field, "at most one " + std::string{job} + " task");
    for (std::size_t i = 0; i < it->size(); ++i) {
      auto f = field + "[" + std::to_string(i) + "]";
      auto hp = parse_host_port(string_of((*it)[i], f), f);
      if (!seen.emplace(hp.host, hp.port).second)
        bad(f, "address " + hp.to_string() + " appears twice");
      spec.nodes_.push_back(
          {std::string{job} + ":" + std::to_string(i), hp, {}, {std::string{job}}, {}});
    }
  }
  if (auto t = root.find("task"); t != root.end()) {
    if (!t->is_object())
      bad("task", "expected an object");
    only_keys(*t, {"type", "index", "trial"}, "task");
    auto type = string_of(member(*t, "type", "task"), "task.type");
    if (!known_role(type))
      bad("task.type", "unknown job \"" + type + "\"");
    int count = 0;
    if (auto j = cluster.find(type); j != cluster.end())
      count = static_cast<int>(j->size());
    else if (type == "evaluator")
      count = 1; // TF runs the evaluator outside the cluster
    else
      bad("task.type", "job \"" + type + "\" is not in \"cluster\"");
    int index = t->contains("index") ? int_of(t->at("index"), "task.index", 0, count - 1) : 0;
    spec.task_type_ = type;
    spec.task_index_ = index;
    auto self = type + ":" + std::to_string(index);
    if (spec.find(self) != nullptr)
      spec.self_ = self;
  }
  return spec;
}

cluster_spec cluster_spec::parse_troupe(const json& root) {
  only_keys(root, {"supervisor", "nodes", "self"}, "cluster spec");
  cluster_spec spec;
  std::set<std::pair<std::string, std::uint16_t>> seen;
  if (auto s = root.find("supervisor"); s != root.end()) {
    spec.supervisor_ = parse_host_port(string_of(*s, "supervisor"), "supervisor");
    seen.emplace(spec.supervisor_->host, spec.supervisor_->port);
  }
  const auto& nodes = root.at("nodes");
  if (!nodes.is_array() || nodes.empty())
    bad("nodes", "expected a non-empty array");
  std::set<std::string> names;
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    std::string field = "nodes[" + std::to_string(i) + "]";
    const auto& n = nodes[i];
    if (!n.is_object())
      bad(field, "expected an object");
    only_keys(n, {"name", "address", "devices", "roles", "data_paths"}, field);
    cluster_node node;
    node.name = string_of(member(n, "name", field), field + ".name");
    if (!valid_node_name(node.name))
      bad(field + ".name", "\"" + node.name + "\" must be 1-64 printable characters, no spaces");
    if (!names.insert(node.name).second)
      bad(field + ".name", "\"" + node.name + "\" appears twice");
    node.address = parse_host_port(string_of(member(n, "address", field), field + ".address"),
                                   field + ".address");
    if (!seen.emplace(node.address.host, node.address.port).second)
      bad(field + ".address", "address " + node.address.to_string() + " appears twice");
    if (auto d = n.find("devices"); d != n.end()) {
      if (!d->is_array() || d->empty())
        bad(field + ".devices", "expected a non-empty array");
      bool has_cpu = false;
      std::set<int> cuda;
      for (std::size_t k = 0; k < d->size(); ++k) {
        std::string df = field + ".devices[" + std::to_string(k) + "]";
        const auto& dev = (*d)[k];
        if (!dev.is_object())
          bad(df, "expected an object");
        auto kind = string_of(member(dev, "kind", df), df + ".kind");
        node_device nd;
        if (kind == "cpu") {
          only_keys(dev, {"kind", "cores"}, df);
          nd.kind = device_kind::cpu;
          nd.cores = dev.contains("cores") ? int_of(dev.at("cores"), df + ".cores", 1, 4096) : 1;
          if (std::exchange(has_cpu, true))
            bad(df, "more than one cpu device (give \"cores\" instead)");
        } else if (kind == "cuda") {
          only_keys(dev, {"kind", "index"}, df);
          nd.kind = device_kind::cuda;
          nd.cores = 0;
          nd.index = int_of(member(dev, "index", df), df + ".index", 0, 1023);
          if (!cuda.insert(nd.index).second)
            bad(df, "cuda:" + std::to_string(nd.index) + " appears twice");
        } else {
          bad(df + ".kind", "unknown device kind \"" + kind + "\" (expected cpu or cuda)");
        }
        node.devices.push_back(nd);
      }
    } else {
      node.devices.push_back({device_kind::cpu, 1, 0});
    }
    if (auto r = n.find("roles"); r != n.end()) {
      if (!r->is_array() || r->empty())
        bad(field + ".roles", "expected a non-empty array");
      for (std::size_t k = 0; k < r->size(); ++k) {
        std::string rf = field + ".roles[" + std::to_string(k) + "]";
        auto role = string_of((*r)[k], rf);
        if (!known_role(role))
          bad(rf, "unknown role \"" + role + "\" (expected chief, worker, ps, evaluator)");
        if (std::find(node.roles.begin(), node.roles.end(), role) != node.roles.end())
          bad(rf, "role \"" + role + "\" appears twice");
        node.roles.push_back(role);
      }
    } else {
      node.roles.push_back("worker");
    }
    if (auto dp = n.find("data_paths"); dp != n.end()) {
      if (!dp->is_object())
        bad(field + ".data_paths", "expected an object of path prefixes {\"FROM\": \"TO\"}");
      for (const auto& [from, to] : dp->items()) {
        auto tf = field + ".data_paths[\"" + from + "\"]";
        auto target = string_of(to, tf);
        if (from.empty() || target.empty())
          bad(tf, "expected non-empty paths");
        node.data_paths.emplace_back(from, target);
      }
    }
    spec.nodes_.push_back(std::move(node));
  }
  if (auto s = root.find("self"); s != root.end()) {
    auto self = string_of(*s, "self");
    if (names.count(self) == 0)
      bad("self", "\"" + self + "\" is not one of the nodes");
    spec.self_ = self;
  }
  return spec;
}

const cluster_node* cluster_spec::find(std::string_view name) const noexcept {
  for (const auto& n : nodes_)
    if (n.name == name)
      return &n;
  return nullptr;
}

std::vector<const cluster_node*> cluster_spec::with_role(std::string_view role) const {
  std::vector<const cluster_node*> out;
  for (const auto& n : nodes_)
    if (std::find(n.roles.begin(), n.roles.end(), role) != n.roles.end())
      out.push_back(&n);
  return out;
}

} // namespace troupe::runtime
