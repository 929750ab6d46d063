// `troupe node`: a node agent process. It joins a supervisor, offers its
// devices, spawns the actors the supervisor asks for, and exits when the
// supervisor stops it or dies, or on SIGINT/SIGTERM.

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <thread>

#include <caf/scoped_actor.hpp>

#include "actors/cluster/cluster_protocol.hpp"
#include "actors/cluster/node_agent.hpp"
#include "apps/troupe/cluster_net.hpp"
#include "apps/troupe/commands.hpp"
#include "apps/troupe/shutdown_signal.hpp"
#include "kernels/cpu/gemm.hpp"
#include "runtime/error.hpp"
#include "runtime/io/file_util.hpp"
#include "runtime/log.hpp"
#include "runtime/net/caf_error.hpp"
#include "runtime/net/security/certs.hpp"
#include "runtime/net/transport/courier.hpp"

namespace troupe::apps {

namespace {

struct node_flags {
  std::string supervisor;
  std::string devices;
  std::string name;
  std::string cluster_file;
  std::string data_address;
  std::vector<std::string> data_paths; ///< --data-path FROM=TO
  int connect_timeout_s = 30;
  bool no_measure = false;
  security_flags security;
};

/// The node's name: --name, else the cluster spec's own entry (TF_CONFIG's
/// task or "self"), else the launcher's rank (mpirun/srun), else host-pid.
std::string choose_name(const node_flags& f, const std::optional<runtime::cluster_spec>& spec) {
  if (!f.name.empty())
    return f.name;
  if (spec && spec->self())
    return node_name_from_spec(*spec->self());
  if (auto r = runtime::launcher_rank())
    return "node-" + std::to_string(r->rank);
  return local_host_name() + "-" + std::to_string(::getpid());
}

std::uint64_t physical_memory() {
  auto pages = ::sysconf(_SC_PHYS_PAGES);
  auto size = ::sysconf(_SC_PAGE_SIZE);
  return pages > 0 && size > 0 ? static_cast<std::uint64_t>(pages) * size : 0;
}

/// The cluster spec of --cluster FILE, else of TF_CONFIG (if set).
std::optional<runtime::cluster_spec> node_cluster_spec(const node_flags& f) {
  if (f.cluster_file.empty())
    return runtime::cluster_spec::from_tf_config_env();
  auto text = runtime::read_file(f.cluster_file, 1 << 20);
  return runtime::cluster_spec::parse(
      std::string_view{reinterpret_cast<const char*>(text.data()), text.size()});
}

/// --supervisor, else the spec's supervisor or first chief.
runtime::host_port supervisor_address(const node_flags& f,
                                      const std::optional<runtime::cluster_spec>& spec) {
  std::string text = f.supervisor;
  if (text.empty() && spec) {
    if (spec->supervisor())
      text = spec->supervisor()->to_string();
    else if (auto chiefs = spec->with_role("chief"); !chiefs.empty())
      text = chiefs.front()->address.to_string();
  }
  if (text.empty())
    throw runtime::input_error("--supervisor HOST:PORT is required (or a cluster spec naming it)");
  return runtime::parse_host_port(text, "--supervisor");
}

/// --devices, else this node's CPU devices in the spec, else one CPU device.
std::vector<actors::device_config> node_devices(const node_flags& f,
                                                const std::optional<runtime::cluster_spec>& spec) {
  std::string text = f.devices;
  if (text.empty() && spec)
    if (const auto* me = spec->find(spec->self().value_or("")); me && !me->devices.empty())
      for (const auto& d : me->devices)
        if (d.kind == runtime::device_kind::cpu)
          text += (text.empty() ? "" : ",") + std::string{"cpu:1x"} + std::to_string(d.cores);
  return actors::parse_device_list(text.empty() ? "cpu:1" : text);
}

/// What this node tells the supervisor at join: host, process, cores, memory,
/// devices and (unless --no-measure) each device's measured GEMM GFLOP/s.
actors::node_description describe_node(const node_flags& f, const std::string& name,
                                       const std::vector<actors::device_config>& devices) {
  actors::node_description self;
  self.name = name;
  self.host = local_host_name();
  self.pid = static_cast<long>(::getpid());
  self.cores = std::max(1u, std::thread::hardware_concurrency());
  self.memory_bytes = physical_memory();
  self.devices = devices;
  for (const auto& d : devices) {
    double g = 0;
    if (!f.no_measure) {
      kernels::cpu::set_blas_threads_for_this_thread(d.threads);
      g = kernels::cpu::measure_gemm_gflops(256, 1024, 1024, 2);
    }
    self.gflops.push_back(g);
  }
  return self;
}

/// How the node's agent ended.
struct agent_end {
  int status = exit_ok; ///< exit_failure unless it ended normally or by a shutdown request
  /// The supervisor dropped this node (it was silent: SIGSTOP, a network
  /// split), or the connection to it broke while it may still run.
  bool dropped = false;
  bool supervisor_gone = false;
};

/// Waits until the node's agent ends and says how.
agent_end wait_for_agent(caf::actor_system& sys, const caf::actor& agent, const std::string& name) {
  agent_end r;
  caf::scoped_actor me{sys};
  me->monitor(agent);
  me->receive([&](const caf::down_msg& dm) {
    if (dm.reason && dm.reason != caf::exit_reason::normal &&
        dm.reason != caf::exit_reason::user_shutdown) {
      auto why = runtime::describe(sys, dm.reason);
      r.dropped = why.find("dropped by the supervisor") != std::string::npos;
      r.supervisor_gone = why.find("the supervisor went away") != std::string::npos;
      std::fprintf(stderr, "%s: node %s: %s\n", r.dropped ? "warning" : "error", name.c_str(),
                   why.c_str());
      r.status = exit_failure;
    }
  });
  return r;
}

/// Set in the environment of a node that re-executed itself to rejoin.
constexpr const char* rejoin_env = "TROUPE_NODE_REJOIN";
/// How long a rejoining node tries to reach the supervisor.
constexpr int rejoin_connect_timeout_s = 3;

/// Marks every descriptor above stderr close-on-exec.
void mark_close_on_exec() {
  std::vector<int> fds;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    while (const dirent* e = ::readdir(d))
      if (int fd = std::atoi(e->d_name); fd > 2)
        fds.push_back(fd);
    ::closedir(d);
  }
  for (int fd : fds)
    if (int flags = ::fcntl(fd, F_GETFD); flags >= 0)
      ::fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
}

/// A node the supervisor dropped starts over as a fresh process: the same
/// command line, a new actor system, data plane and join, nothing of its
/// old job. Returns only if that fails.
void rejoin_as_fresh_node(const std::string& name) {
  std::FILE* f = std::fopen("/proc/self/cmdline", "rb");
  if (!f)
    return;
  std::string all;
  char buf[4096];
  for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;)
    all.append(buf, n);
  std::fclose(f);
  std::vector<std::string> args;
  for (std::size_t at = 0; at < all.size();) {
    auto end = all.find('\0', at);
    args.push_back(all.substr(at, end - at));
    at = end == std::string::npos ? all.size() : end + 1;
  }
  std::vector<char*> argv;
  for (auto& a : args)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  std::printf("troupe node '%s': rejoining the cluster as a fresh node\n", name.c_str());
  // The new image tries the supervisor briefly: one that was stopping when
  // it was probed must not keep a node waiting for the full connect timeout.
  ::setenv(rejoin_env, "1", 1);
  std::fflush(stdout);
  std::fflush(stderr);
  // The old connections end with this process image, not in the new one. Only
  // marked close-on-exec: closing them now would pull them from under the
  // threads still running (CAF's multiplexer aborts on a closed descriptor).
  mark_close_on_exec();
  ::execv("/proc/self/exe", argv.data());
  std::fprintf(stderr, "error: node %s: cannot restart itself: %s\n", name.c_str(),
               std::strerror(errno));
}

/// Bounded exit: a node whose supervisor is gone must not linger. Stopping
/// the data plane and the actor system normally takes milliseconds; if it
/// has not finished in a few seconds (seen once, after SIGSTOP + SIGCONT
/// mid-step, not reproduced since), say so and exit anyway.
void exit_within_seconds(int seconds, int status, const std::string& name) {
  std::thread([seconds, status, name] {
    std::this_thread::sleep_for(std::chrono::seconds(seconds));
    std::fprintf(stderr, "error: node %s: shutdown did not finish within %d s; exiting\n",
                 name.c_str(), seconds);
    std::fflush(stderr);
    std::_Exit(status == exit_ok ? exit_failure : status);
  }).detach();
}

/// Where this node finds the files jobs name: --data-path FROM=TO first,
/// then its cluster-spec entry's "data_paths".
actors::data_path_map node_data_paths(const node_flags& f,
                                      const std::optional<runtime::cluster_spec>& spec,
                                      const std::string& name) {
  actors::data_path_map map;
  for (const auto& text : f.data_paths)
    map.push_back(actors::parse_data_path(text));
  if (spec)
    if (const auto* entry = spec->find(name))
      for (const auto& [from, to] : entry->data_paths)
        map.push_back({from, to});
  return map;
}

int run_node(const node_flags& f) {
  shutdown_signal signals;
  auto log = runtime::logger("node");
  auto spec = node_cluster_spec(f);
  auto sup_at = supervisor_address(f, spec);
  auto name = choose_name(f, spec);
  if (!runtime::valid_node_name(name))
    throw runtime::input_error("--name: '" + name +
                               "' is not a node name (1-64 of [A-Za-z0-9._-], not starting "
                               "with '.')");
  const auto devices = node_devices(f, spec);
  auto tls = resolve_security(f.security, name, sup_at.host);
  const auto self = describe_node(f, name, devices);
  cluster_system_config cfg{tls, f.security};
  caf::actor_system sys{cfg};
  const bool rejoining = std::getenv(rejoin_env) != nullptr;
  ::unsetenv(rejoin_env);
  const int connect_s =
      rejoining ? std::min(f.connect_timeout_s, rejoin_connect_timeout_s) : f.connect_timeout_s;
  auto supervisor = connect_actor(sys, cfg.tls(), sup_at, std::chrono::seconds(connect_s));
  auto timeout = std::chrono::seconds(10);
  auto w = actors::join_cluster(sys, supervisor, self, tls ? &*tls : nullptr, timeout);
  runtime::transport::courier_options co;
  co.name = name;
  co.key = w.key;
  std::string data_host = !f.data_address.empty()         ? f.data_address
                          : is_loopback_host(sup_at.host) ? std::string{"127.0.0.1"}
                                                          : local_host_name();
  auto courier = runtime::transport::courier::start(
      sys, co, is_loopback_host(data_host) ? "127.0.0.1" : "0.0.0.0", 0);
  actors::node_agent_config ac;
  ac.name = name;
  ac.courier = courier;
  ac.data_paths = node_data_paths(f, spec, name);
  ac.supervisor = supervisor;
  auto agent = actors::spawn_node_agent(sys, ac);
  courier->on_failure([agent, log, name](const std::string& peer, const std::string& why) {
    log->error("{}: data plane to {} failed: {}", name, peer, why);
  });
  int status = exit_ok;
  try {
    actors::announce_ready(sys, supervisor, name, agent, data_host, courier->port(),
                           courier->endpoint(), timeout);
  } catch (...) {
    caf::anon_send_exit(agent, caf::exit_reason::user_shutdown);
    courier->stop();
    throw;
  }
  std::printf("troupe node '%s' (pid %ld) joined %s with %zu device(s), data plane port %u\n",
              name.c_str(), self.pid, sup_at.to_string().c_str(), devices.size(), courier->port());
  std::fflush(stdout);
  signals.watch([agent, log, name](int sig) {
    log->info("{}: signal {}: shutting down", name, sig);
    caf::anon_send_exit(agent, caf::exit_reason::user_shutdown);
  });
  auto end = wait_for_agent(sys, agent, name);
  status = end.status;
  // Dropped while stopped or cut off, it comes back as a fresh node, if the
  // supervisor still answers (a lost connection to one that does counts as
  // a drop too); a supervisor that is gone ends the node.
  if ((end.dropped || end.supervisor_gone) && !signals.received()) {
    try {
      connect_actor(sys, cfg.tls(), sup_at, std::chrono::seconds(3));
      rejoin_as_fresh_node(name);
    } catch (const std::exception& e) {
      log->error("{}: {}; stopping", name, e.what()); // names the supervisor and why
    }
  }
  exit_within_seconds(5, status, name);
  courier->stop();
  return status;
}

} // namespace

command_action add_node_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("node", "run a node agent that joins a supervisor");
  auto f = std::make_shared<node_flags>();
  cmd->add_option("--supervisor", f->supervisor, "HOST:PORT of the supervisor");
  cmd->add_option("--devices", f->devices,
                  "devices to offer: cpu:N (N devices of 1 thread) or cpu:NxT, comma-separated "
                  "(default cpu:1)");
  cmd->add_option("--name", f->name,
                  "node name (default: cluster spec, launcher rank, or host-pid); with --certs "
                  "DIR its certificate is DIR/NAME.pem");
  cmd->add_option("--cluster", f->cluster_file,
                  "cluster spec (TF_CONFIG shape or troupe's; default: $TF_CONFIG)");
  cmd->add_option("--data-path", f->data_paths,
                  "FROM=TO: a job's data under path FROM is read at TO on this node (jobs read "
                  "their data on the nodes; repeatable)");
  cmd->add_option("--data-address", f->data_address,
                  "host peers use to reach this node's data plane");
  cmd->add_option("--connect-timeout", f->connect_timeout_s,
                  "seconds to keep trying to reach the supervisor")
      ->capture_default_str()
      ->check(CLI::Range(1, 3600));
  cmd->add_flag("--no-measure", f->no_measure, "skip the GEMM speed measurement of the devices");
  add_security_flags(cmd, f->security);
  return [f] { return run_node(*f); };
}

} // namespace troupe::apps
