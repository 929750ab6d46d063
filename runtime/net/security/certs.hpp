#pragma once

// The certificates of a troupe cluster (`troupe certs`): a self-signed cluster
// CA and one certificate per node signed by it, for mutual TLS between CAF
// nodes (runtime/net/security/tls_config.hpp). Generated with the OpenSSL 3 API (EC P-256
// keys, SHA-256 signatures), written as PEM; private keys are created with
// mode 0600 and never exist with wider permissions.
//
// Layout: `<ca_dir>/ca.pem` and `<ca_dir>/ca-key.pem`;
// `<out_dir>/<name>.pem` and `<out_dir>/<name>-key.pem` per node.

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/net/security/tls_config.hpp"

namespace troupe::runtime {

/// Options of certificate generation.
struct cert_options {
  /// Validity in days (1..3650).
  int days = 825;
  /// Replace existing files instead of refusing.
  bool overwrite = false;
  /// CN of the CA certificate.
  std::string ca_name = "troupe cluster CA";
};

/// Paths of the CA files in `ca_dir`.
std::filesystem::path ca_certificate_path(const std::filesystem::path& ca_dir);
std::filesystem::path ca_key_path(const std::filesystem::path& ca_dir);

/// Creates `dir` if needed and writes a new CA key pair and self-signed
/// certificate (basicConstraints critical CA:TRUE, pathlen 0; keyUsage
/// keyCertSign, cRLSign). Throws input_error when the files exist and
/// `opts.overwrite` is false, or on bad options.
void generate_ca(const std::filesystem::path& dir, const cert_options& opts = {});

/// Issues a node certificate signed by the CA in `ca_dir`: CN = `name`,
/// subjectAltName = `sans` (each an IPv4/IPv6 address or a DNS name; empty
/// means 127.0.0.1, ::1 and localhost), extendedKeyUsage serverAuth and
/// clientAuth (every node both accepts and opens connections). Node names are
/// 1..64 characters of [A-Za-z0-9._-] not starting with '.', because they
/// name the files. Returns the files to pass to configure_tls. Throws
/// input_error for a bad name or SAN, a missing or broken CA, or existing
/// files without `opts.overwrite`.
tls_files issue_certificate(const std::filesystem::path& ca_dir,
                            const std::filesystem::path& out_dir, std::string_view name,
                            const std::vector<std::string>& sans, const cert_options& opts = {});

/// True for a usable node name (see issue_certificate).
bool valid_node_name(std::string_view name) noexcept;

} // namespace troupe::runtime
