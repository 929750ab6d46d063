// `troupe supervisor`: a cluster supervisor that nodes join and jobs are
// submitted to (`troupe train --supervisor`), serving /status and /metrics.

#include <cstdio>
#include <fstream>
#include <memory>

#include <caf/scoped_actor.hpp>
#include <unistd.h>

#include "actors/cluster/cluster_protocol.hpp"
#include "actors/cluster/node_agent.hpp"
#include "actors/cluster/supervisor.hpp"
#include "apps/troupe/cluster_net.hpp"
#include "apps/troupe/commands.hpp"
#include "apps/troupe/shutdown_signal.hpp"
#include "runtime/error.hpp"
#include "runtime/io/file_util.hpp"
#include "runtime/log.hpp"
#include "runtime/net/caf_error.hpp"
#include "runtime/net/transport/courier.hpp"
#include "runtime/telemetry/prometheus.hpp"
#include "runtime/telemetry/status_server.hpp"

namespace troupe::apps {

namespace {

struct supervisor_flags {
  std::string listen;
  int expect_nodes = 0;
  std::string cluster_file;
  std::string status = "127.0.0.1:0";
  std::string data_address;
  std::string name = "supervisor";
  int jobs = 0;
  int join_wait_s = 120;
  std::string info_file;
  security_flags security;
};

/// Asks the supervisor actor from the status server's thread.
template <class Atom>
std::string ask(caf::actor_system& sys, const caf::actor& sup, Atom what) {
  caf::scoped_actor self{sys};
  std::string r;
  self->request(sup, std::chrono::seconds(2), what)
      .receive([&](std::string& text) { r = std::move(text); },
               [&](caf::error& err) {
                 throw std::runtime_error("supervisor: " + runtime::describe(sys, err));
               });
  return r;
}

/// --listen, else the --cluster spec's supervisor (or chief) address; the
/// spec's non-chief nodes are added to `allowed_names`. Empty: none given.
std::string listen_address(const supervisor_flags& f, std::vector<std::string>& allowed_names) {
  std::string listen = f.listen;
  if (f.cluster_file.empty())
    return listen;
  auto text = runtime::read_file(f.cluster_file, 1 << 20);
  auto spec = runtime::cluster_spec::parse(
      std::string_view{reinterpret_cast<const char*>(text.data()), text.size()});
  for (const auto& n : spec.nodes())
    if (std::find(n.roles.begin(), n.roles.end(), "chief") == n.roles.end())
      allowed_names.push_back(node_name_from_spec(n.name));
  if (listen.empty() && spec.supervisor())
    listen = spec.supervisor()->to_string();
  if (listen.empty())
    for (auto* chief : spec.with_role("chief"))
      listen = chief->address.to_string();
  return listen;
}

/// GET /status (JSON) and GET /metrics (Prometheus text), both asked of `sup`.
runtime::status_server::handler_map status_handlers(caf::actor_system& sys, caf::actor sup) {
  runtime::status_server::handler_map handlers;
  handlers["GET /status"] = [&sys, sup] {
    return runtime::status_server::response{"application/json",
                                            ask(sys, sup, actors::status_atom::value) + "\n"};
  };
  handlers["GET /metrics"] = [&sys, sup] {
    return runtime::status_server::response{runtime::prometheus_builder::content_type,
                                            ask(sys, sup, actors::metrics_atom::value)};
  };
  return handlers;
}

/// The HTTP endpoint on --status; a port in use says so and names the flag.
std::unique_ptr<runtime::status_server> start_status_server(caf::actor_system& sys, caf::actor sup,
                                                            const runtime::host_port& at) {
  try {
    return std::make_unique<runtime::status_server>(at.host, at.port, status_handlers(sys, sup));
  } catch (const runtime::input_error& e) {
    throw runtime::input_error(runtime::explain_listen_failure("--status", at, e.what()));
  }
}

/// --info-file: the supervisor's pid and ports, for scripts and tests.
void write_info_file(const std::string& file, std::uint16_t port, std::uint16_t data_port,
                     std::uint16_t status_port) {
  nlohmann::json info{{"pid", static_cast<long>(::getpid())},
                      {"port", port},
                      {"data_port", data_port},
                      {"status_port", status_port}};
  auto text = info.dump() + "\n";
  runtime::write_file_atomically(file,
                                 {reinterpret_cast<const std::byte*>(text.data()), text.size()});
}

int run_supervisor(const supervisor_flags& f) {
  shutdown_signal signals;
  auto log = runtime::logger("supervisor");
  actors::supervisor_config sc;
  sc.local_node = false;
  sc.name = f.name;
  sc.max_jobs = f.jobs;
  sc.join_wait = std::chrono::seconds(f.join_wait_s);
  const auto listen = listen_address(f, sc.allowed_names);
  if (listen.empty())
    throw runtime::input_error("--listen ADDR:PORT is required (or a --cluster spec naming the "
                               "supervisor's address)");
  sc.expect_nodes = f.expect_nodes > 0
                        ? f.expect_nodes
                        : std::max<int>(1, static_cast<int>(sc.allowed_names.size()));
  auto where = parse_listen_address(listen, "--listen");
  auto status_at = parse_listen_address(f.status, "--status");
  auto tls = resolve_security(f.security, f.name, where.host);
  cluster_system_config cfg{tls, f.security}; // checks timeout > heartbeat
  // The supervisor's own ping of each node agent keeps --timeout-ms's promise
  // too: a ping every heartbeat, answered within the rest of the timeout, so a
  // node silent for --timeout-ms is declared lost, and a busy node is not
  // while it answers within what the operator allows.
  sc.ping_interval = std::chrono::milliseconds{f.security.heartbeat_ms};
  sc.ping_timeout = std::chrono::milliseconds{f.security.timeout_ms - f.security.heartbeat_ms};
  caf::actor_system sys{cfg};
  if (tls)
    sc.ca = tls->ca;
  // The supervisor's own data plane: the trainer's inputs to the first stage.
  runtime::transport::courier_options co;
  co.name = f.name;
  co.key = runtime::transport::generate_key();
  sc.key = co.key;
  sc.data_host = !f.data_address.empty()   ? f.data_address
                 : where.host == "0.0.0.0" ? local_host_name()
                                           : where.host;
  auto courier = runtime::transport::courier::start(sys, co, where.host, 0);
  sc.courier = courier;
  auto sup = actors::spawn_supervisor(sys, sc);
  std::uint16_t port = 0;
  std::unique_ptr<runtime::status_server> status;
  try {
    port = publish_actor(sys, sup, cfg.tls(), where);
    status = start_status_server(sys, sup, status_at);
  } catch (...) {
    caf::anon_send_exit(sup, caf::exit_reason::user_shutdown);
    courier->stop();
    throw;
  }
  std::printf("troupe supervisor '%s' listening on %s:%u (%s), data plane port %u, "
              "status http://%s:%u/status, expecting %d node(s)\n",
              f.name.c_str(), where.host.c_str(), port, cfg.tls() ? "mutual TLS" : "PLAIN TCP",
              courier->port(), status_at.host.c_str(), status->port(), sc.expect_nodes);
  std::fflush(stdout);
  if (!f.info_file.empty())
    write_info_file(f.info_file, port, courier->port(), status->port());
  signals.watch([sup, log](int sig) {
    log->info("signal {}: shutting down", sig);
    caf::anon_send(sup, actors::stop_atom::value);
  });
  {
    caf::scoped_actor self{sys};
    self->monitor(sup);
    self->receive([](const caf::down_msg&) {});
  }
  status.reset();
  courier->stop();
  log->info("supervisor stopped");
  return exit_ok;
}

} // namespace

command_action add_supervisor_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("supervisor", "run a cluster supervisor until stopped");
  auto f = std::make_shared<supervisor_flags>();
  cmd->add_option("--listen", f->listen, "ADDR:PORT nodes and clients connect to (port 0: any)");
  cmd->add_option("--expect-nodes", f->expect_nodes,
                  "jobs wait until this many nodes are ready (default 1, or the cluster spec's)")
      ->check(CLI::Range(1, 4096));
  cmd->add_option("--cluster", f->cluster_file,
                  "cluster spec (TF_CONFIG shape or troupe's): which nodes may join");
  cmd->add_option("--status", f->status, "ADDR:PORT of the HTTP /status and /metrics endpoint")
      ->capture_default_str();
  cmd->add_option("--data-address", f->data_address,
                  "host nodes use to reach this process's data plane (default: the --listen host)");
  cmd->add_option("--name", f->name, "certificate name of the supervisor")->capture_default_str();
  cmd->add_option("--jobs", f->jobs, "stop (with every node) after this many jobs; 0: never")
      ->check(CLI::Range(0, 1000000));
  cmd->add_option("--join-wait", f->join_wait_s,
                  "seconds a submitted job waits for the expected nodes")
      ->capture_default_str()
      ->check(CLI::Range(1, 86400));
  cmd->add_option("--info-file", f->info_file,
                  "write {pid, port, data_port, status_port} as JSON once listening");
  add_security_flags(cmd, f->security);
  return [f] { return run_supervisor(*f); };
}

} // namespace troupe::apps
