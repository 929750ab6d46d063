#include "runtime/net/security/certs.hpp"

#include <cerrno>
#include <cstring>
#include <memory>
#include <span>
#include <string>

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "runtime/error.hpp"
#include "runtime/net/security/openssl_handles.hpp"
#include "runtime/io/file_util.hpp"

namespace troupe::runtime {

namespace {

using namespace openssl;

struct bn_free {
  void operator()(BIGNUM* p) const noexcept { BN_free(p); }
};
struct ext_free {
  void operator()(X509_EXTENSION* p) const noexcept { X509_EXTENSION_free(p); }
};



/// Failures of OpenSSL itself (not of the input) are internal errors.
[[noreturn]] void openssl_fail(const std::string& what) {
  throw std::runtime_error("certs: " + what + ": " + ssl_errors());
}

void check_options(const cert_options& opts) {
  if (opts.days < 1 || opts.days > 3650)
    throw input_error("certs: validity must be 1..3650 days, got " + std::to_string(opts.days));
  if (opts.ca_name.empty() || opts.ca_name.size() > 64)
    throw input_error("certs: the CA name must have 1..64 characters");
  for (unsigned char c : opts.ca_name)
    if (c < 0x20 || c > 0x7e)
      throw input_error("certs: the CA name must be printable ASCII");
}

void refuse_existing(const std::filesystem::path& p, const cert_options& opts) {
  std::error_code ec;
  if (!opts.overwrite && std::filesystem::exists(std::filesystem::symlink_status(p, ec)))
    throw input_error("certs: " + quoted(p) + " already exists (pass overwrite to replace it)");
}

void ensure_directory(const std::filesystem::path& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec || !std::filesystem::is_directory(dir))
    throw input_error("certs: cannot create directory " + quoted(dir) +
                      (ec ? ": " + ec.message() : std::string{}));
}

pkey_ptr make_key() {
  pkey_ptr key{EVP_EC_gen("P-256")};
  if (!key)
    openssl_fail("cannot generate an EC P-256 key");
  return key;
}

std::string to_pem(X509* cert) {
  bio_ptr bio{BIO_new(BIO_s_mem())};
  if (!bio || PEM_write_bio_X509(bio.get(), cert) != 1)
    openssl_fail("cannot encode certificate");
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(n));
}

/// PKCS#8 PEM of an unencrypted key; the caller cleanses it.
std::string to_pem(EVP_PKEY* key) {
  bio_ptr bio{BIO_new(BIO_s_secmem())};
  if (!bio)
    bio.reset(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1)
    openssl_fail("cannot encode private key");
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  std::string r(data, static_cast<std::size_t>(n));
  return r;
}

void write_public(const std::filesystem::path& target, const std::string& text) {
  write_file_atomically(target, std::as_bytes(std::span{text.data(), text.size()}));
}

/// Writes a secret through a temporary file created 0600 (so the key is never
/// readable by others, whatever the umask), fsynced, then renamed over the
/// target, or hard-linked to it without `overwrite` so an existing file that
/// appeared meanwhile is still never replaced.
void write_secret(const std::filesystem::path& target, std::string& text, bool overwrite) {
  auto dir = target.parent_path().empty() ? std::filesystem::path{"."} : target.parent_path();
  unsigned char rnd[8];
  if (RAND_bytes(rnd, sizeof rnd) != 1)
    openssl_fail("random generator failed");
  std::string suffix = ".tmp." + std::to_string(::getpid()) + ".";
  for (auto b : rnd)
    suffix += "0123456789abcdef"[b & 0xf];
  // Built with append: GCC 12 reports a false -Wrestrict for "literal" + string&&.
  std::string tmp_name{"."};
  tmp_name += target.filename().string();
  tmp_name += suffix;
  auto tmp = dir / tmp_name;
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  auto fail = [&](const std::string& what, int err) {
    OPENSSL_cleanse(text.data(), text.size());
    ::unlink(tmp.c_str());
    throw input_error("certs: " + what + " " + quoted(target) + ": " + std::strerror(err));
  };
  if (fd < 0)
    fail("cannot create a temporary file for", errno);
  std::size_t done = 0;
  while (done < text.size()) {
    auto n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      int err = errno;
      ::close(fd);
      fail("cannot write", err);
    }
    done += static_cast<std::size_t>(n);
  }
  OPENSSL_cleanse(text.data(), text.size());
  if (::fsync(fd) != 0 || ::close(fd) != 0)
    fail("cannot write", errno);
  if (overwrite) {
    if (::rename(tmp.c_str(), target.c_str()) != 0)
      fail("cannot rename a temporary file to", errno);
  } else {
    if (::link(tmp.c_str(), target.c_str()) != 0)
      fail(errno == EEXIST ? "refusing to replace existing" : "cannot create", errno);
    ::unlink(tmp.c_str());
  }
}

void add_ext(X509* cert, X509V3_CTX* ctx, int nid, const std::string& value) {
  std::unique_ptr<X509_EXTENSION, ext_free> ext{
      X509V3_EXT_conf_nid(nullptr, ctx, nid, value.c_str())};
  if (!ext || X509_add_ext(cert, ext.get(), -1) != 1)
    openssl_fail(std::string{"cannot add extension "} + OBJ_nid2sn(nid) + " = " + value);
}

/// A certificate with serial, validity, subject and public key set.
x509_ptr new_certificate(EVP_PKEY* key, const std::string& cn, int days) {
  x509_ptr cert{X509_new()};
  if (!cert || X509_set_version(cert.get(), 2) != 1)
    openssl_fail("cannot create certificate");
  // 159-bit random serial (positive, as RFC 5280 asks).
  unsigned char serial[20];
  if (RAND_bytes(serial, sizeof serial) != 1)
    openssl_fail("random generator failed");
  serial[0] &= 0x7f;
  std::unique_ptr<BIGNUM, bn_free> bn{BN_bin2bn(serial, sizeof serial, nullptr)};
  if (!bn || !BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(cert.get())))
    openssl_fail("cannot set serial number");
  // Backdated a little so peers with slightly late clocks accept it.
  if (!X509_gmtime_adj(X509_getm_notBefore(cert.get()), -300) ||
      !X509_gmtime_adj(X509_getm_notAfter(cert.get()), 86400L * days))
    openssl_fail("cannot set validity");
  X509_NAME* name = X509_get_subject_name(cert.get());
  if (X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                                 reinterpret_cast<const unsigned char*>("troupe"), -1, -1,
                                 0) != 1 ||
      X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                 reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1,
                                 0) != 1)
    openssl_fail("cannot set subject name");
  if (X509_set_pubkey(cert.get(), key) != 1)
    openssl_fail("cannot set public key");
  return cert;
}

bool valid_dns_name(std::string_view s) noexcept {
  if (s.empty() || s.size() > 253 || s.front() == '.' || s.back() == '.')
    return false;
  std::size_t label = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '.') {
      if (label == 0 || s[i - 1] == '-')
        return false;
      label = 0;
      continue;
    }
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              (c == '-' && label > 0);
    if (!ok || ++label > 63)
      return false;
  }
  return s.back() != '-';
}

/// "DNS:a,IP:b" for X509V3_EXT_conf_nid, from validated entries only (so no
/// entry can smuggle a ',' or another field into the extension string).
std::string subject_alt_names(const std::vector<std::string>& sans) {
  std::vector<std::string> list = sans;
  if (list.empty())
    list = {"127.0.0.1", "::1", "localhost"};
  std::string r;
  for (const auto& s : list) {
    unsigned char buf[16];
    std::string item;
    char text[INET6_ADDRSTRLEN];
    if (::inet_pton(AF_INET, s.c_str(), buf) == 1) {
      item = "IP:" + std::string{::inet_ntop(AF_INET, buf, text, sizeof text)};
    } else if (::inet_pton(AF_INET6, s.c_str(), buf) == 1) {
      item = "IP:" + std::string{::inet_ntop(AF_INET6, buf, text, sizeof text)};
    } else if (valid_dns_name(s)) {
      item = "DNS:" + s;
    } else {
      throw input_error("certs: subject alternative name '" + s +
                        "' is neither an IP address nor a DNS name");
    }
    if (!r.empty())
      r += ',';
    r += item;
  }
  return r;
}

x509_ptr read_cert(const std::filesystem::path& p) {
  bio_ptr bio{BIO_new_file(p.c_str(), "r")};
  if (!bio)
    throw input_error("certs: cannot open CA certificate " + quoted(p) + ": " + ssl_errors());
  x509_ptr cert{PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)};
  if (!cert)
    throw input_error("certs: " + quoted(p) + " is not a PEM certificate: " + ssl_errors());
  return cert;
}

int no_prompt(char*, int, int, void*) {
  return -1;
}

pkey_ptr read_key(const std::filesystem::path& p) {
  bio_ptr bio{BIO_new_file(p.c_str(), "r")};
  if (!bio)
    throw input_error("certs: cannot open CA key " + quoted(p) + ": " + ssl_errors());
  pkey_ptr key{PEM_read_bio_PrivateKey(bio.get(), nullptr, no_prompt, nullptr)};
  if (!key)
    throw input_error("certs: " + quoted(p) +
                      " is not an unencrypted PEM private key: " + ssl_errors());
  return key;
}

} // namespace

bool valid_node_name(std::string_view name) noexcept {
  if (name.empty() || name.size() > 64 || name.front() == '.')
    return false;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-';
    if (!ok)
      return false;
  }
  return true;
}

std::filesystem::path ca_certificate_path(const std::filesystem::path& ca_dir) {
  return ca_dir / "ca.pem";
}

std::filesystem::path ca_key_path(const std::filesystem::path& ca_dir) {
  return ca_dir / "ca-key.pem";
}

void generate_ca(const std::filesystem::path& dir, const cert_options& opts) {
  check_options(opts);
  auto cert_path = ca_certificate_path(dir);
  auto key_path = ca_key_path(dir);
  refuse_existing(cert_path, opts);
  refuse_existing(key_path, opts);
  ensure_directory(dir);
  ERR_clear_error();

  auto key = make_key();
  auto cert = new_certificate(key.get(), opts.ca_name, opts.days);
  if (X509_set_issuer_name(cert.get(), X509_get_subject_name(cert.get())) != 1)
    openssl_fail("cannot set issuer");
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, cert.get(), cert.get(), nullptr, nullptr, 0);
  add_ext(cert.get(), &ctx, NID_basic_constraints, "critical,CA:TRUE,pathlen:0");
  add_ext(cert.get(), &ctx, NID_key_usage, "critical,keyCertSign,cRLSign");
  add_ext(cert.get(), &ctx, NID_subject_key_identifier, "hash");
  if (X509_sign(cert.get(), key.get(), EVP_sha256()) <= 0)
    openssl_fail("cannot sign the CA certificate");

  // Key first: a certificate without its key is useless, the reverse is not
  // dangerous and is overwritten by the next attempt with overwrite.
  auto key_pem = to_pem(key.get());
  write_secret(key_path, key_pem, opts.overwrite);
  write_public(cert_path, to_pem(cert.get()));
}

tls_files issue_certificate(const std::filesystem::path& ca_dir,
                            const std::filesystem::path& out_dir, std::string_view name,
                            const std::vector<std::string>& sans, const cert_options& opts) {
  check_options(opts);
  if (!valid_node_name(name))
    throw input_error("certs: invalid node name '" + std::string{name} +
                      "' (1..64 characters of A-Z a-z 0-9 . _ -, not starting with '.')");
  auto san_text = subject_alt_names(sans);
  std::string node{name};
  tls_files out;
  out.certificate = out_dir / (node + ".pem");
  out.key = out_dir / (node + "-key.pem");
  out.ca = ca_certificate_path(ca_dir);
  refuse_existing(out.certificate, opts);
  refuse_existing(out.key, opts);
  ERR_clear_error();

  auto ca_cert = read_cert(out.ca);
  auto ca_key = read_key(ca_key_path(ca_dir));
  if (X509_check_private_key(ca_cert.get(), ca_key.get()) != 1) {
    ERR_clear_error();
    throw input_error("certs: " + quoted(ca_key_path(ca_dir)) + " is not the key of " +
                      quoted(out.ca));
  }
  if (X509_check_ca(ca_cert.get()) == 0)
    throw input_error("certs: " + quoted(out.ca) + " is not a CA certificate");
  ensure_directory(out_dir);

  auto key = make_key();
  auto cert = new_certificate(key.get(), node, opts.days);
  if (X509_set_issuer_name(cert.get(), X509_get_subject_name(ca_cert.get())) != 1)
    openssl_fail("cannot set issuer");
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, ca_cert.get(), cert.get(), nullptr, nullptr, 0);
  add_ext(cert.get(), &ctx, NID_basic_constraints, "critical,CA:FALSE");
  add_ext(cert.get(), &ctx, NID_key_usage, "critical,digitalSignature");
  add_ext(cert.get(), &ctx, NID_ext_key_usage, "serverAuth,clientAuth");
  add_ext(cert.get(), &ctx, NID_subject_key_identifier, "hash");
  add_ext(cert.get(), &ctx, NID_authority_key_identifier, "keyid:always");
  add_ext(cert.get(), &ctx, NID_subject_alt_name, san_text);
  if (X509_sign(cert.get(), ca_key.get(), EVP_sha256()) <= 0)
    openssl_fail("cannot sign the node certificate");

  auto key_pem = to_pem(key.get());
  write_secret(out.key, key_pem, opts.overwrite);
  write_public(out.certificate, to_pem(cert.get()));
  return out;
}

} // namespace troupe::runtime
