// `troupe certs`: the cluster CA and the node certificates for mutual TLS
// (docs/cluster-security.md). `init` makes the CA, `issue` one certificate per
// node (and one for the client that submits jobs), `check` runs the same checks
// as a node at start-up and shows what the certificate says, so an operator
// finds a wrong file before the cluster does.

#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include "apps/troupe/commands.hpp"
#include "runtime/net/security/certs.hpp"
#include "runtime/error.hpp"
#include "runtime/net/security/node_identity.hpp"
#include "runtime/net/security/tls_config.hpp"

namespace troupe::apps {

namespace {

namespace fs = std::filesystem;
using runtime::input_error;

struct certs_flags {
  std::string dir;
  std::string name;
  std::vector<std::string> hosts;
  std::string out;
  int days = runtime::cert_options{}.days;
  bool force = false;
  std::string cert, key, ca;
};

/// The library refuses existing files too; this says which flag replaces them.
void refuse_existing(const std::vector<fs::path>& paths, bool force) {
  if (force)
    return;
  for (const auto& p : paths) {
    std::error_code ec;
    if (fs::exists(fs::symlink_status(p, ec)))
      throw input_error("certs: '" + p.string() + "' already exists; pass --force to replace it");
  }
}

void check_name(const std::string& name) {
  if (!runtime::valid_node_name(name))
    throw input_error("certs: invalid --name '" + name +
                      "' (1..64 characters of A-Z a-z 0-9 . _ -, not starting with '.')");
}

std::string utc(std::chrono::system_clock::time_point t) {
  auto tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  ::gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buf;
}

int run_init(const certs_flags& f) {
  fs::path dir{f.dir};
  refuse_existing({runtime::ca_certificate_path(dir), runtime::ca_key_path(dir)}, f.force);
  runtime::cert_options opts;
  opts.days = f.days;
  opts.overwrite = f.force;
  runtime::generate_ca(dir, opts);
  std::printf("wrote %s and %s (mode 0600), valid %d days\n"
              "keep %s off the nodes: it signs certificates and nothing else\n",
              runtime::ca_certificate_path(dir).c_str(), runtime::ca_key_path(dir).c_str(), f.days,
              runtime::ca_key_path(dir).c_str());
  return exit_ok;
}

int run_issue(const certs_flags& f) {
  check_name(f.name);
  fs::path dir{f.dir};
  fs::path out = f.out.empty() ? dir : fs::path{f.out};
  // A missing CA is reported before anything is written.
  for (const auto& p : {runtime::ca_certificate_path(dir), runtime::ca_key_path(dir)}) {
    std::error_code ec;
    if (!fs::is_regular_file(p, ec))
      throw input_error("certs: CA file '" + p.string() +
                        "' does not exist; create the CA with `troupe certs init --dir " +
                        dir.string() + "`");
  }
  refuse_existing({out / (f.name + ".pem"), out / (f.name + "-key.pem")}, f.force);
  runtime::cert_options opts;
  opts.days = f.days;
  opts.overwrite = f.force;
  auto files = runtime::issue_certificate(dir, out, f.name, f.hosts, opts);
  auto info = runtime::describe_certificate(runtime::read_certificate_pem(files.certificate));
  std::printf("wrote %s and %s (mode 0600)\n", files.certificate.c_str(), files.key.c_str());
  std::printf("CN %s, SANs", info.common_name.c_str());
  for (const auto& san : info.subject_alt_names)
    std::printf(" %s", san.c_str());
  std::printf(", expires %s\n", utc(info.not_after).c_str());
  std::printf("copy %s, %s and %s to the machine of '%s'\n", files.certificate.c_str(),
              files.key.c_str(), files.ca.c_str(), f.name.c_str());
  return exit_ok;
}

int run_check(const certs_flags& f) {
  runtime::tls_files files;
  if (!f.name.empty()) {
    check_name(f.name);
    if (f.dir.empty())
      throw input_error("certs check: --name needs --dir (the directory of the files)");
    fs::path dir{f.dir};
    files.certificate = dir / (f.name + ".pem");
    files.key = dir / (f.name + "-key.pem");
    files.ca = runtime::ca_certificate_path(dir);
  } else if (!f.dir.empty()) {
    throw input_error("certs check: --dir needs --name (or give --cert, --key and --ca)");
  }
  // Explicit files win, e.g. --dir nodes --name a --ca ca/ca.pem.
  if (!f.cert.empty())
    files.certificate = f.cert;
  if (!f.key.empty())
    files.key = f.key;
  if (!f.ca.empty())
    files.ca = f.ca;
  if (files.certificate.empty() || files.key.empty() || files.ca.empty())
    throw input_error("certs check: give --dir and --name, or --cert, --key and --ca");
  std::error_code ec;
  if (f.ca.empty() && !fs::exists(files.ca, ec))
    throw input_error("certs check: no CA certificate '" + files.ca.string() +
                      "'; pass --ca with the cluster's ca.pem");
  runtime::validate_tls_files(files);
  auto info = runtime::describe_certificate(runtime::read_certificate_pem(files.certificate));
  auto left = std::chrono::duration_cast<std::chrono::hours>(info.not_after -
                                                             std::chrono::system_clock::now());
  std::printf("ok: %s with key %s verifies against CA %s\n", files.certificate.c_str(),
              files.key.c_str(), files.ca.c_str());
  std::printf("CN:      %s\n", info.common_name.empty() ? "(none)" : info.common_name.c_str());
  std::printf("SANs:   ");
  for (const auto& san : info.subject_alt_names)
    std::printf(" %s", san.c_str());
  std::printf("%s\n", info.subject_alt_names.empty() ? " (none)" : "");
  std::printf("issuer:  %s\n", info.issuer.c_str());
  std::printf("expires: %s (%lld days left)\n", utc(info.not_after).c_str(),
              static_cast<long long>(left.count() / 24));
  if (left < std::chrono::hours(24 * 30))
    std::fprintf(stderr, "warning: %s expires within 30 days; issue a new one with --force\n",
                 files.certificate.c_str());
  return exit_ok;
}

} // namespace

command_action add_certs_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("certs", "create the cluster CA and node certificates (TLS)");
  cmd->require_subcommand(1);
  auto f = std::make_shared<certs_flags>();
  auto days_help = "validity in days, 1..3650 (default " + std::to_string(f->days) + ")";

  auto* init = cmd->add_subcommand("init", "create the cluster CA: DIR/ca.pem and DIR/ca-key.pem");
  init->add_option("--dir", f->dir, "directory of the CA")->required();
  init->add_option("--days", f->days, days_help);
  init->add_flag("--force", f->force, "replace an existing CA (invalidates issued certificates)");

  auto* issue = cmd->add_subcommand(
      "issue", "issue a node (or client) certificate signed by the CA: OUT/NAME.pem, "
               "OUT/NAME-key.pem");
  issue->add_option("--dir", f->dir, "directory of the CA (troupe certs init)")->required();
  issue->add_option("--name", f->name, "node name, the certificate's CN")->required();
  issue->add_option("--host", f->hosts,
                    "IP address or DNS name of the node, repeatable (default 127.0.0.1, ::1, "
                    "localhost)");
  issue->add_option("--out", f->out, "output directory (default: --dir)");
  issue->add_option("--days", f->days, days_help);
  issue->add_flag("--force", f->force, "replace existing files of NAME");

  auto* check = cmd->add_subcommand(
      "check", "check a node's files as a node does at start-up; print CN, SANs and expiry");
  check->add_option("--dir", f->dir, "directory with NAME.pem, NAME-key.pem and ca.pem");
  check->add_option("--name", f->name, "node name");
  check->add_option("--cert", f->cert, "certificate file (instead of --dir/--name)");
  check->add_option("--key", f->key, "private key file");
  check->add_option("--ca", f->ca, "CA certificate file");

  return [f, init, issue, check] {
    if (init->parsed())
      return run_init(*f);
    if (issue->parsed())
      return run_issue(*f);
    if (check->parsed())
      return run_check(*f);
    return exit_bad_input;
  };
}

} // namespace troupe::apps
