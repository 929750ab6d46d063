#include "runtime/net/security/tls_config.hpp"

#include <algorithm>
#include <cstring>
#include <memory>
#include <string_view>
#include <system_error>
#include <vector>

#include <sys/stat.h>

#include <caf/actor_system_config.hpp>
#include <caf/timespan.hpp>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include "runtime/error.hpp"
#include "runtime/net/security/openssl_handles.hpp"

namespace troupe::runtime {

namespace {

using namespace openssl;

struct store_free {
  void operator()(X509_STORE* p) const noexcept { X509_STORE_free(p); }
};
struct store_ctx_free {
  void operator()(X509_STORE_CTX* p) const noexcept { X509_STORE_CTX_free(p); }
};
struct stack_free {
  void operator()(STACK_OF(X509) * p) const noexcept { sk_X509_pop_free(p, X509_free); }
};



/// `path` must name an existing regular file; returns its absolute form,
/// because caf_openssl opens the files later, possibly after a chdir.
std::filesystem::path existing_file(const std::filesystem::path& path, std::string_view what) {
  if (path.empty())
    throw input_error(std::string{what} + ": no file given");
  std::error_code ec;
  auto st = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(st))
    throw input_error(std::string{what} + " " + quoted(path) + " does not exist");
  if (!std::filesystem::is_regular_file(st))
    throw input_error(std::string{what} + " " + quoted(path) + " is not a regular file");
  auto abs = std::filesystem::absolute(path, ec);
  return ec ? path : abs.lexically_normal();
}

bio_ptr open_bio(const std::filesystem::path& path, std::string_view what) {
  bio_ptr bio{BIO_new_file(path.c_str(), "r")};
  if (!bio)
    throw input_error("cannot open " + std::string{what} + " " + quoted(path) + ": " +
                      ssl_errors());
  return bio;
}

/// Every certificate of a PEM file, in order; at least one.
std::vector<x509_ptr> load_certificates(const std::filesystem::path& path, std::string_view what) {
  auto bio = open_bio(path, what);
  std::vector<x509_ptr> certs;
  while (X509* c = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr))
    certs.emplace_back(c);
  // Reading stops with a "no start line" error at the end of the file.
  auto last = ERR_peek_last_error();
  if (certs.empty() || (last != 0 && ERR_GET_REASON(last) != PEM_R_NO_START_LINE)) {
    auto why = ssl_errors();
    throw input_error(std::string{what} + " " + quoted(path) +
                      " is not a PEM certificate file: " + why);
  }
  ERR_clear_error();
  return certs;
}

/// Never prompts on a terminal: an encrypted key without a passphrase fails.
int passphrase_cb(char* buf, int size, int, void* user) {
  auto* pass = static_cast<const std::string*>(user);
  if (pass == nullptr || pass->empty() || size <= 0)
    return -1;
  auto n = std::min<std::size_t>(pass->size(), static_cast<std::size_t>(size));
  std::memcpy(buf, pass->data(), n);
  return static_cast<int>(n);
}

pkey_ptr load_key(const std::filesystem::path& path, const std::string& passphrase) {
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && (st.st_mode & (S_IRWXG | S_IRWXO)) != 0)
    throw input_error("TLS private key " + quoted(path) +
                      " is accessible by group or others; run chmod 600 on it");
  auto bio = open_bio(path, "TLS private key");
  pkey_ptr key{PEM_read_bio_PrivateKey(bio.get(), nullptr, passphrase_cb,
                                       const_cast<std::string*>(&passphrase))};
  if (!key) {
    auto why = ssl_errors();
    throw input_error("TLS private key " + quoted(path) + " cannot be read" +
                      (passphrase.empty() ? " (encrypted keys need a passphrase)" : "") + ": " +
                      why);
  }
  return key;
}

std::string subject_of(X509* cert) {
  char buf[512];
  X509_NAME_oneline(X509_get_subject_name(cert), buf, sizeof buf);
  return buf;
}

/// Absolute paths of the checked files.
tls_files check(const tls_files& in) {
  tls_files out = in;
  out.certificate = existing_file(in.certificate, "TLS certificate");
  out.key = existing_file(in.key, "TLS private key");
  out.ca = existing_file(in.ca, "TLS CA certificate");
  ERR_clear_error();
  auto chain = load_certificates(out.certificate, "TLS certificate");
  auto cas = load_certificates(out.ca, "TLS CA certificate");
  auto key = load_key(out.key, in.passphrase);
  X509* leaf = chain.front().get();
  if (X509_check_private_key(leaf, key.get()) != 1) {
    ERR_clear_error();
    throw input_error("TLS private key " + quoted(out.key) + " does not belong to certificate " +
                      quoted(out.certificate) + " (" + subject_of(leaf) + ")");
  }
  // caf_openssl's context runs at OpenSSL's default security level, which
  // refuses keys weaker than 112 bits (RSA < 2048) during the handshake.
  if (EVP_PKEY_get_security_bits(key.get()) < 112)
    throw input_error("TLS private key " + quoted(out.key) +
                      " is too weak (needs RSA >= 2048 bits or an EC key of >= 224 bits)");

  std::unique_ptr<X509_STORE, store_free> store{X509_STORE_new()};
  for (auto& ca : cas)
    if (X509_STORE_add_cert(store.get(), ca.get()) != 1)
      throw input_error("cannot use CA certificate " + quoted(out.ca) + ": " + ssl_errors());
  std::unique_ptr<STACK_OF(X509), stack_free> untrusted{sk_X509_new_null()};
  for (std::size_t i = 1; i < chain.size(); ++i) {
    X509_up_ref(chain[i].get());
    sk_X509_push(untrusted.get(), chain[i].get());
  }
  std::unique_ptr<X509_STORE_CTX, store_ctx_free> ctx{X509_STORE_CTX_new()};
  if (!ctx || X509_STORE_CTX_init(ctx.get(), store.get(), leaf, untrusted.get()) != 1)
    throw std::runtime_error("cannot set up certificate verification: " + ssl_errors());
  if (X509_verify_cert(ctx.get()) != 1) {
    int err = X509_STORE_CTX_get_error(ctx.get());
    ERR_clear_error();
    throw input_error("TLS certificate " + quoted(out.certificate) + " (" + subject_of(leaf) +
                      ") does not verify against CA " + quoted(out.ca) + ": " +
                      X509_verify_cert_error_string(err));
  }
  return out;
}

} // namespace

void validate_tls_files(const tls_files& files) {
  check(files);
}

/// Defined in tls_io_guard.cpp; calling it links that object (and its
/// interposed SSL_* functions) into every program that configures TLS.
bool tls_io_guard_linked() noexcept;

void configure_tls(caf::actor_system_config& cfg, const tls_files& files) {
  if (!tls_io_guard_linked())
    throw std::logic_error("tls_io_guard missing");
  auto ok = check(files);
  // caf::openssl::manager reads these members (the options openssl.certificate,
  // openssl.key, openssl.passphrase, openssl.cafile are bound to them). Any of
  // them being non-empty turns on peer verification (SSL_VERIFY_PEER |
  // SSL_VERIFY_FAIL_IF_NO_PEER_CERT) on both ends.
  cfg.openssl_certificate = ok.certificate.string();
  cfg.openssl_key = ok.key.string();
  cfg.openssl_cafile = ok.ca.string();
  cfg.openssl_capath.clear();
  cfg.openssl_passphrase = ok.passphrase;
}

void configure_liveness(caf::actor_system_config& cfg, std::chrono::milliseconds heartbeat,
                        std::chrono::milliseconds timeout) {
  if (heartbeat.count() <= 0 || timeout <= heartbeat)
    throw input_error("liveness: need 0 < heartbeat interval (" +
                      std::to_string(heartbeat.count()) + " ms) < connection timeout (" +
                      std::to_string(timeout.count()) + " ms)");
  auto set_checked = [&](const char* name, std::chrono::milliseconds value) {
    caf::timespan ts{std::chrono::duration_cast<caf::timespan>(value)};
    cfg.set(name, ts);
    // set() only prints to stderr when the name or type is wrong: read back.
    auto got = caf::get_if<caf::timespan>(&cfg, name);
    if (!got || *got != ts)
      throw std::logic_error(std::string{"CAF did not accept option "} + name);
  };
  set_checked("middleman.heartbeat-interval", heartbeat);
  set_checked("middleman.connection-timeout", timeout);
}

} // namespace troupe::runtime
