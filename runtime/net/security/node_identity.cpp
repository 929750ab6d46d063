#include "runtime/net/security/node_identity.hpp"

#include <algorithm>
#include <ctime>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <vector>

#include <arpa/inet.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include "runtime/error.hpp"
#include "runtime/io/file_util.hpp"
#include "runtime/net/security/openssl_handles.hpp"

namespace troupe::runtime {

namespace {

using namespace openssl;

/// Certificates arrive from the network at join: a node certificate with a
/// few intermediates is a few KiB, anything much larger is refused unparsed.
constexpr std::size_t max_certificate_pem = 64 * 1024;
/// RSA-8192 signatures are 1024 bytes; ECDSA ones far less.
constexpr std::size_t max_signature_bytes = 1024;
constexpr std::size_t nonce_bytes = 32;
constexpr std::string_view join_tag = "troupe-join-v1";

std::string to_hex(std::span<const unsigned char> bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string r(2 * bytes.size(), '\0');
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    r[2 * i] = digits[bytes[i] >> 4];
    r[2 * i + 1] = digits[bytes[i] & 0xf];
  }
  return r;
}

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

bool is_hex(std::string_view s) noexcept {
  return std::all_of(s.begin(), s.end(), [](char c) { return hex_value(c) >= 0; });
}

std::vector<unsigned char> signature_bytes(std::string_view hex) {
  if (hex.empty() || hex.size() % 2 != 0 || hex.size() > 2 * max_signature_bytes || !is_hex(hex))
    throw input_error("node identity: the signature is not 2.." +
                      std::to_string(2 * max_signature_bytes) + " hex digits (got " +
                      std::to_string(hex.size()) + " characters)");
  std::vector<unsigned char> r(hex.size() / 2);
  for (std::size_t i = 0; i < r.size(); ++i)
    r[i] = static_cast<unsigned char>(hex_value(hex[2 * i]) << 4 | hex_value(hex[2 * i + 1]));
  return r;
}

/// Text from a peer, safe to put into an error message or a log line.
std::string printable(std::string_view s) {
  std::string r{s.substr(0, 128)};
  for (auto& c : r)
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e)
      c = '?';
  return s.size() > r.size() ? r + "..." : r;
}

/// Ed25519 and Ed448 sign the message itself; every other key type signs its
/// SHA-256 digest. Signer and verifier derive it from the key alike.
const EVP_MD* digest_for(EVP_PKEY* key) {
  return EVP_PKEY_is_a(key, "ED25519") || EVP_PKEY_is_a(key, "ED448") ? nullptr : EVP_sha256();
}

using md_ctx_ptr = std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)>;

md_ctx_ptr new_md_ctx() {
  md_ctx_ptr ctx{EVP_MD_CTX_new(), &EVP_MD_CTX_free};
  if (!ctx)
    throw std::runtime_error("node identity: out of memory for a digest context");
  return ctx;
}

/// The certificates of a PEM text, leaf first; input_error when there are none
/// or the text is not PEM.
std::vector<x509_ptr> parse_certificates(std::string_view pem, const std::string& what) {
  if (pem.size() > max_certificate_pem)
    throw input_error(what + " is larger than " + std::to_string(max_certificate_pem) + " bytes");
  ERR_clear_error();
  bio_ptr bio{BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()))};
  if (!bio)
    throw std::runtime_error("node identity: cannot read " + what + ": " + ssl_errors());
  using info_stack = std::unique_ptr<STACK_OF(X509_INFO), void (*)(STACK_OF(X509_INFO)*)>;
  info_stack infos{PEM_X509_INFO_read_bio(bio.get(), nullptr, nullptr, nullptr),
                   [](STACK_OF(X509_INFO) * s) { sk_X509_INFO_pop_free(s, X509_INFO_free); }};
  std::vector<x509_ptr> certs;
  for (int i = 0; infos && i < sk_X509_INFO_num(infos.get()); ++i) {
    X509_INFO* info = sk_X509_INFO_value(infos.get(), i);
    if (info->x509 != nullptr) {
      certs.emplace_back(info->x509);
      info->x509 = nullptr;
    }
  }
  if (!infos || certs.empty())
    throw input_error(
        what + " is not a PEM certificate" +
        (ERR_peek_error() != 0 ? ": " + ssl_errors() : std::string{" (no CERTIFICATE block)"}));
  ERR_clear_error();
  return certs;
}

std::string name_line(const X509_NAME* name) {
  char buf[256];
  X509_NAME_oneline(name, buf, sizeof buf);
  return printable(buf);
}

std::string subject_line(X509* cert) {
  return name_line(X509_get_subject_name(cert));
}

/// The CN of the subject as UTF-8; nullopt when there is none, several, or
/// one that is not a string.
std::optional<std::string> common_name(X509* cert) {
  X509_NAME* subject = X509_get_subject_name(cert);
  int at = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
  if (at < 0 || X509_NAME_get_index_by_NID(subject, NID_commonName, at) >= 0)
    return std::nullopt;
  unsigned char* utf8 = nullptr;
  int n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, at)));
  if (n < 0) {
    ERR_clear_error();
    return std::nullopt;
  }
  std::string cn(reinterpret_cast<const char*>(utf8), static_cast<std::size_t>(n));
  OPENSSL_free(utf8);
  return cn;
}

std::string ia5_text(const ASN1_IA5STRING* s) {
  return printable({reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                    static_cast<std::size_t>(ASN1_STRING_length(s))});
}

std::string ip_text(const ASN1_OCTET_STRING* s) {
  char text[INET6_ADDRSTRLEN] = "?";
  auto n = ASN1_STRING_length(s);
  if (n == 4 || n == 16)
    ::inet_ntop(n == 4 ? AF_INET : AF_INET6, ASN1_STRING_get0_data(s), text, sizeof text);
  return text;
}

std::vector<std::string> alt_names(X509* cert) {
  std::vector<std::string> r;
  std::unique_ptr<GENERAL_NAMES, void (*)(GENERAL_NAMES*)> names{
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr)),
      GENERAL_NAMES_free};
  for (int i = 0; names && i < sk_GENERAL_NAME_num(names.get()); ++i) {
    const GENERAL_NAME* g = sk_GENERAL_NAME_value(names.get(), i);
    switch (g->type) {
    case GEN_DNS:
      r.push_back("DNS:" + ia5_text(g->d.dNSName));
      break;
    case GEN_IPADD:
      r.push_back("IP:" + ip_text(g->d.iPAddress));
      break;
    case GEN_EMAIL:
      r.push_back("email:" + ia5_text(g->d.rfc822Name));
      break;
    case GEN_URI:
      r.push_back("URI:" + ia5_text(g->d.uniformResourceIdentifier));
      break;
    default:
      r.push_back("other");
      break;
    }
  }
  return r;
}

std::chrono::system_clock::time_point to_time_point(const ASN1_TIME* t) {
  std::tm tm{};
  if (ASN1_TIME_to_tm(t, &tm) != 1)
    throw input_error("node identity: certificate has an invalid validity time");
  return std::chrono::system_clock::from_time_t(::timegm(&tm));
}

/// Chain of `chain[0]` to the CA file at `ca` for a TLS client (a joining
/// node), within validity.
void verify_chain(const std::filesystem::path& ca, const std::vector<x509_ptr>& chain) {
  std::unique_ptr<X509_STORE, decltype(&X509_STORE_free)> store{X509_STORE_new(), &X509_STORE_free};
  if (!store)
    throw std::runtime_error("node identity: cannot create a certificate store");
  if (X509_STORE_load_file(store.get(), ca.c_str()) != 1)
    throw input_error("node identity: cannot load the cluster CA certificate " + quoted(ca) + ": " +
                      ssl_errors());
  std::unique_ptr<STACK_OF(X509), void (*)(STACK_OF(X509)*)> untrusted{
      sk_X509_new_null(), [](STACK_OF(X509) * s) { sk_X509_free(s); }};
  for (std::size_t i = 1; untrusted && i < chain.size(); ++i)
    sk_X509_push(untrusted.get(), chain[i].get()); // borrowed: `chain` outlives the check
  std::unique_ptr<X509_STORE_CTX, decltype(&X509_STORE_CTX_free)> ctx{X509_STORE_CTX_new(),
                                                                      &X509_STORE_CTX_free};
  X509* leaf = chain.front().get();
  if (!untrusted || !ctx ||
      X509_STORE_CTX_init(ctx.get(), store.get(), leaf, untrusted.get()) != 1 ||
      X509_STORE_CTX_set_purpose(ctx.get(), X509_PURPOSE_SSL_CLIENT) != 1)
    throw std::runtime_error("node identity: cannot set up certificate verification: " +
                             ssl_errors());
  if (X509_verify_cert(ctx.get()) == 1)
    return;
  int err = X509_STORE_CTX_get_error(ctx.get());
  ERR_clear_error();
  throw input_error("node identity: certificate " + subject_line(leaf) +
                    " not signed by the cluster CA " + quoted(ca) +
                    " (or not valid now): " + X509_verify_cert_error_string(err));
}

void check_field(std::string_view value, std::string_view what) {
  if (value.empty() || value.find_first_of(std::string_view{"\n\0", 2}) != std::string_view::npos)
    throw input_error("node identity: the " + std::string{what} +
                      " must be non-empty without newlines or NUL (got '" + printable(value) +
                      "')");
}

} // namespace

std::string read_certificate_pem(const std::filesystem::path& certificate) {
  auto bytes = read_file(certificate, max_certificate_pem);
  std::string pem(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  parse_certificates(pem, "certificate file " + quoted(certificate));
  return pem;
}

certificate_info describe_certificate(std::string_view certificate_pem) {
  auto chain = parse_certificates(certificate_pem, "certificate");
  X509* cert = chain.front().get();
  certificate_info info;
  info.subject = subject_line(cert);
  info.issuer = name_line(X509_get_issuer_name(cert));
  info.common_name = common_name(cert).value_or("");
  info.subject_alt_names = alt_names(cert);
  info.not_before = to_time_point(X509_get0_notBefore(cert));
  info.not_after = to_time_point(X509_get0_notAfter(cert));
  return info;
}

std::string sign_message(const tls_files& files, std::string_view message) {
  ERR_clear_error();
  bio_ptr bio{BIO_new_file(files.key.c_str(), "r")};
  if (!bio)
    throw input_error("node identity: cannot open private key " + quoted(files.key) + ": " +
                      ssl_errors());
  // With no callback OpenSSL takes the user data as the passphrase, so an
  // encrypted key without one fails instead of prompting on the terminal.
  pkey_ptr key{PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr,
                                       const_cast<char*>(files.passphrase.c_str()))};
  if (!key)
    throw input_error("node identity: private key " + quoted(files.key) + " cannot be read" +
                      (files.passphrase.empty() ? " (encrypted keys need a passphrase)" : "") +
                      ": " + ssl_errors());
  auto ctx = new_md_ctx();
  auto data = reinterpret_cast<const unsigned char*>(message.data());
  std::size_t len = 0;
  if (EVP_DigestSignInit(ctx.get(), nullptr, digest_for(key.get()), nullptr, key.get()) != 1 ||
      EVP_DigestSign(ctx.get(), nullptr, &len, data, message.size()) != 1)
    throw input_error("node identity: cannot sign with private key " + quoted(files.key) + ": " +
                      ssl_errors());
  std::vector<unsigned char> sig(len);
  if (EVP_DigestSign(ctx.get(), sig.data(), &len, data, message.size()) != 1)
    throw std::runtime_error("node identity: signing failed: " + ssl_errors());
  sig.resize(len);
  return to_hex(sig);
}

void verify_node_identity(const std::filesystem::path& ca, std::string_view certificate_pem,
                          std::string_view expected_name, std::string_view message,
                          std::string_view signature_hex) {
  auto signature = signature_bytes(signature_hex);
  auto chain = parse_certificates(certificate_pem, "node identity: the presented certificate");
  X509* leaf = chain.front().get();
  // The CA signs node certificates; it is never a node itself.
  if (X509_check_ca(leaf) != 0)
    throw input_error("node identity: certificate " + subject_line(leaf) +
                      " is a CA certificate, not a node certificate");
  verify_chain(ca, chain);
  auto cn = common_name(leaf);
  if (!cn)
    throw input_error("node identity: certificate " + subject_line(leaf) +
                      " must have exactly one CN");
  if (*cn != expected_name)
    throw input_error("node identity: certificate CN '" + printable(*cn) +
                      "' does not match node name '" + printable(expected_name) + "'");
  EVP_PKEY* key = X509_get0_pubkey(leaf);
  if (key == nullptr)
    throw input_error("node identity: the public key of certificate " + subject_line(leaf) +
                      " cannot be used: " + ssl_errors());
  auto ctx = new_md_ctx();
  ERR_clear_error();
  int ok =
      EVP_DigestVerifyInit(ctx.get(), nullptr, digest_for(key), nullptr, key) == 1
          ? EVP_DigestVerify(ctx.get(), signature.data(), signature.size(),
                             reinterpret_cast<const unsigned char*>(message.data()), message.size())
          : -1;
  ERR_clear_error();
  if (ok != 1)
    throw input_error("node identity: signature does not verify with the key of certificate " +
                      subject_line(leaf) + " (node '" + printable(expected_name) + "')");
}

std::string join_proof_message(std::string_view nonce_hex, std::string_view node_name,
                               std::string_view supervisor_id) {
  if (nonce_hex.size() != 2 * nonce_bytes || !is_hex(nonce_hex))
    throw input_error("node identity: the nonce is not " + std::to_string(2 * nonce_bytes) +
                      " hex digits (got '" + printable(nonce_hex) + "')");
  check_field(node_name, "node name");
  check_field(supervisor_id, "supervisor id");
  std::string r{join_tag};
  for (auto part : {nonce_hex, node_name, supervisor_id}) {
    r += '\n';
    r += part;
  }
  return r;
}

std::string random_nonce_hex() {
  unsigned char bytes[nonce_bytes];
  if (RAND_bytes(bytes, sizeof bytes) != 1)
    throw std::runtime_error("node identity: OpenSSL RAND_bytes failed: " + ssl_errors());
  return to_hex(bytes);
}

challenge_book::challenge_book(std::chrono::milliseconds ttl, std::size_t capacity,
                               now_function now)
    : ttl_(ttl), capacity_(capacity), now_(std::move(now)) {
  if (ttl_.count() <= 0 || capacity_ == 0 || !now_)
    throw input_error("challenge_book: need a positive ttl (got " + std::to_string(ttl_.count()) +
                      " ms), a positive capacity (got " + std::to_string(capacity_) +
                      ") and a clock");
}

void challenge_book::drop_expired(clock::time_point now) {
  while (!open_.empty() && open_.front().expires <= now)
    open_.pop_front();
}

std::string challenge_book::issue() {
  auto now = now_();
  drop_expired(now);
  while (open_.size() >= capacity_)
    open_.pop_front();
  auto nonce = random_nonce_hex();
  open_.push_back({nonce, now + ttl_});
  return nonce;
}

bool challenge_book::consume(std::string_view nonce) {
  auto now = now_();
  drop_expired(now);
  auto it = std::find_if(open_.begin(), open_.end(),
                         [&](const challenge& c) { return c.nonce == nonce; });
  if (it == open_.end())
    return false;
  bool live = it->expires > now;
  open_.erase(it);
  return live;
}

std::size_t challenge_book::outstanding() const {
  auto now = now_();
  return static_cast<std::size_t>(std::count_if(
      open_.begin(), open_.end(), [&](const challenge& c) { return c.expires > now; }));
}

} // namespace troupe::runtime
