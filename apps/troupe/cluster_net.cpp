#include "apps/troupe/cluster_net.hpp"

#include <unistd.h>

#include <cstdlib>
#include <thread>

#include <caf/io/middleman.hpp>
#include <caf/openssl/all.hpp>

#include "runtime/error.hpp"
#include "runtime/net/caf_error.hpp"

namespace troupe::apps {

void add_security_flags(CLI::App* cmd, security_flags& f) {
  cmd->add_option("--certs", f.certs_dir,
                  "directory with ca.pem, NAME.pem and NAME-key.pem (from `troupe certs`)");
  cmd->add_option("--cert", f.cert, "this process's certificate (PEM)");
  cmd->add_option("--key", f.key, "its private key (PEM)");
  cmd->add_option("--ca", f.ca, "the cluster CA certificate (PEM)");
  cmd->add_option("--key-passphrase-env", f.passphrase_env,
                  "environment variable holding the key's passphrase");
  cmd->add_flag("--insecure-plain", f.insecure_plain,
                "plain TCP without TLS, loopback addresses only (local experiments)");
  cmd->add_option("--heartbeat-ms", f.heartbeat_ms, "heartbeat interval of cluster connections")
      ->capture_default_str()
      ->check(CLI::Range(10, 60000));
  cmd->add_option("--timeout-ms", f.timeout_ms,
                  "a peer silent for this long is declared dead (> heartbeat); on the "
                  "supervisor, also a node agent that leaves its pings unanswered")
      ->capture_default_str()
      ->check(CLI::Range(20, 600000));
}

std::string local_host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0 || buf[0] == 0)
    return "localhost";
  return buf;
}

bool is_loopback_host(const std::string& host) {
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

runtime::host_port parse_listen_address(const std::string& text, const std::string& field) {
  auto colon = text.rfind(':');
  if (colon != std::string::npos && text.substr(colon + 1) == "0") {
    auto hp = runtime::parse_host_port(text.substr(0, colon) + ":1", field);
    hp.port = 0;
    return hp;
  }
  return runtime::parse_host_port(text, field);
}

std::string node_name_from_spec(const std::string& spec_name) {
  std::string r = spec_name;
  for (auto& c : r)
    if (c == ':')
      c = '-';
  return r;
}

std::optional<runtime::tls_files> resolve_security(const security_flags& f, const std::string& name,
                                                   const std::string& host) {
  bool files = !f.cert.empty() || !f.key.empty() || !f.ca.empty();
  if (f.insecure_plain) {
    if (!f.certs_dir.empty() || files)
      throw runtime::input_error("--insecure-plain and TLS files are mutually exclusive");
    if (!is_loopback_host(host))
      throw runtime::input_error("--insecure-plain is refused for '" + host +
                                 "': plain TCP is allowed on loopback addresses only");
    return std::nullopt;
  }
  runtime::tls_files t;
  if (!f.certs_dir.empty()) {
    if (files)
      throw runtime::input_error("give either --certs or --cert/--key/--ca, not both");
    std::filesystem::path dir{f.certs_dir};
    t.certificate = dir / (name + ".pem");
    t.key = dir / (name + "-key.pem");
    t.ca = dir / "ca.pem";
  } else if (files) {
    if (f.cert.empty() || f.key.empty() || f.ca.empty())
      throw runtime::input_error("--cert, --key and --ca go together");
    t.certificate = f.cert;
    t.key = f.key;
    t.ca = f.ca;
  } else {
    throw runtime::input_error("no credentials: give --certs DIR (see `troupe certs`), or "
                               "--insecure-plain for a loopback-only experiment");
  }
  if (!f.passphrase_env.empty()) {
    const char* p = std::getenv(f.passphrase_env.c_str());
    if (p == nullptr)
      throw runtime::input_error("--key-passphrase-env: " + f.passphrase_env + " is not set");
    t.passphrase = p;
  }
  return t;
}

cluster_system_config::cluster_system_config(const std::optional<runtime::tls_files>& tls,
                                             const security_flags& f) {
  load<caf::io::middleman>();
  if (tls) {
    load<caf::openssl::manager>();
    runtime::configure_tls(*this, *tls);
    tls_ = true;
  }
  if (f.timeout_ms <= f.heartbeat_ms)
    throw runtime::input_error("--timeout-ms must exceed --heartbeat-ms");
  runtime::configure_liveness(*this, std::chrono::milliseconds{f.heartbeat_ms},
                              std::chrono::milliseconds{f.timeout_ms});
}

std::uint16_t publish_actor(caf::actor_system& sys, const caf::actor& a, bool tls,
                            const runtime::host_port& where, const std::string& flag) {
  const char* host = where.host == "0.0.0.0" || where.host.empty() ? nullptr : where.host.c_str();
  auto port = tls ? caf::openssl::publish(a, where.port, host, true)
                  : sys.middleman().publish(a, where.port, host, true);
  if (!port)
    throw runtime::input_error(runtime::explain_listen_error(sys, port.error(), flag, where));
  return *port;
}

caf::actor connect_actor(caf::actor_system& sys, bool tls, const runtime::host_port& where,
                         std::chrono::milliseconds patience, const std::string& peer) {
  auto deadline = std::chrono::steady_clock::now() + patience;
  for (;;) {
    auto a = tls ? caf::openssl::remote_actor(sys, where.host, where.port)
                 : sys.middleman().remote_actor(where.host, where.port);
    if (a)
      return *a;
    // A TLS / plain mismatch or a refused certificate never heals: say so now.
    auto why = runtime::explain_connect_error(sys, a.error(), peer, where, tls);
    if (!why.transient || std::chrono::steady_clock::now() >= deadline)
      throw std::runtime_error(why.message);
    std::this_thread::sleep_for(std::chrono::milliseconds{200});
  }
}

} // namespace troupe::apps
