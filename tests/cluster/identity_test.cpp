// Node identity proof at join (runtime/net/security/node_identity.hpp), with certificates
// from runtime/net/security/certs.hpp in a temporary directory:
//  - the right certificate with its key's signature of the join message
//    verifies;
//  - node-b's certificate presented by a node claiming node-a, a certificate
//    named node-a from another CA, an expired certificate of the cluster CA,
//    and a signature of another message (other nonce, other supervisor, other
//    key) are refused with an input_error that says what failed;
//  - a challenge is consumed once (a replay is refused), not after its ttl,
//    and the book keeps at most `capacity` challenges;
//  - garbage certificates, signatures, keys and nonces give input_error,
//    never a crash or another exception.

#define BOOST_TEST_DYN_LINK
#define BOOST_TEST_MODULE cluster_identity
#include <boost/test/unit_test.hpp>

#include <cctype>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "runtime/net/security/certs.hpp"
#include "runtime/error.hpp"
#include "runtime/net/security/node_identity.hpp"
#include "tests/io/temp_dir.hpp"

namespace rt = troupe::runtime;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

constexpr const char* supervisor = "supervisor-1";

/// CA 1 with node-a and node-b; CA 2 with another "node-a". Made once.
struct identity_certs {
  troupe::test::temp_dir dir;
  fs::path root = dir.path();
  rt::tls_files a, b, foreign_a;

  identity_certs() {
    rt::generate_ca(root / "ca1");
    rt::generate_ca(root / "ca2");
    a = rt::issue_certificate(root / "ca1", root / "nodes", "node-a", {});
    b = rt::issue_certificate(root / "ca1", root / "nodes", "node-b", {});
    foreign_a = rt::issue_certificate(root / "ca2", root / "foreign", "node-a", {});
  }
};

const identity_certs& certs() {
  static identity_certs c;
  return c;
}

/// True when `f` throws an input_error whose message contains `part`; any
/// other exception fails the check instead of escaping.
template <class F>
bool refused(F&& f, const std::string& part) {
  try {
    f();
  } catch (const rt::input_error& e) {
    BOOST_TEST_MESSAGE("refused: " << e.what());
    if (std::string{e.what()}.find(part) != std::string::npos)
      return true;
    BOOST_ERROR("message lacks '" << part << "': " << e.what());
    return false;
  } catch (const std::exception& e) {
    BOOST_ERROR("not an input_error: " << e.what());
    return false;
  }
  BOOST_ERROR("accepted, expected a refusal containing '" << part << "'");
  return false;
}

/// refused() for verify_node_identity against the cluster CA (CA 1).
bool identity_refused(const std::string& certificate, const std::string& name,
                      const std::string& message, const std::string& signature,
                      const std::string& part) {
  return refused(
      [&] { rt::verify_node_identity(certs().a.ca, certificate, name, message, signature); }, part);
}

/// What a joining node sends for a nonce: its certificate and signature.
struct join_proof {
  std::string message, certificate, signature;
};

join_proof prove(const rt::tls_files& files, const std::string& nonce, const std::string& name,
                 const std::string& supervisor_id = supervisor) {
  join_proof p;
  p.message = rt::join_proof_message(nonce, name, supervisor_id);
  p.certificate = rt::read_certificate_pem(files.certificate);
  p.signature = rt::sign_message(files, p.message);
  return p;
}

/// A clock the tests move by hand.
struct manual_clock {
  std::shared_ptr<rt::challenge_book::clock::time_point> now =
      std::make_shared<rt::challenge_book::clock::time_point>();
  rt::challenge_book::now_function function() const {
    return [t = now] { return *t; };
  }
  void advance(std::chrono::milliseconds d) const { *now += d; }
};

/// `cert` re-signed by the CA in `ca_dir`, with the public key of `key` when
/// given, and with a validity that ended a day ago when `expired`.
std::string resigned(const fs::path& cert, const fs::path& ca_dir, EVP_PKEY* key, bool expired) {
  auto pem = rt::read_certificate_pem(cert);
  BIO* in = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  X509* x = PEM_read_bio_X509(in, nullptr, nullptr, nullptr);
  BIO_free(in);
  FILE* kf = std::fopen(rt::ca_key_path(ca_dir).c_str(), "r");
  BOOST_REQUIRE(x != nullptr && kf != nullptr);
  EVP_PKEY* ca_key = PEM_read_PrivateKey(kf, nullptr, nullptr, nullptr);
  std::fclose(kf);
  BOOST_REQUIRE(ca_key != nullptr);
  if (key != nullptr)
    BOOST_REQUIRE(X509_set_pubkey(x, key) == 1);
  if (expired) {
    X509_gmtime_adj(X509_getm_notBefore(x), -2 * 86400L);
    X509_gmtime_adj(X509_getm_notAfter(x), -86400L);
  }
  BOOST_REQUIRE(X509_sign(x, ca_key, EVP_sha256()) > 0);
  BIO* out = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(out, x);
  char* data = nullptr;
  long n = BIO_get_mem_data(out, &data);
  std::string r(data, static_cast<std::size_t>(n));
  BIO_free(out);
  EVP_PKEY_free(ca_key);
  X509_free(x);
  return r;
}

/// Writes `key` unencrypted to `path` with mode 0600.
void write_key(EVP_PKEY* key, const fs::path& path) {
  FILE* f = std::fopen(path.c_str(), "w");
  BOOST_REQUIRE(f != nullptr);
  BOOST_REQUIRE(PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr) == 1);
  std::fclose(f);
  fs::permissions(path, fs::perms::owner_read | fs::perms::owner_write);
}

} // namespace

BOOST_AUTO_TEST_CASE(right_certificate_and_signature_verify) {
  const auto& c = certs();
  rt::challenge_book book;
  auto nonce = book.issue();
  BOOST_CHECK_EQUAL(nonce.size(), 64u);
  auto p = prove(c.a, nonce, "node-a");
  BOOST_CHECK(book.consume(nonce));
  BOOST_CHECK_NO_THROW(
      rt::verify_node_identity(c.a.ca, p.certificate, "node-a", p.message, p.signature));
  // Lowercase hex, one ECDSA P-256 DER signature (at most 72 bytes).
  BOOST_CHECK(p.signature.find_first_not_of("0123456789abcdef") == std::string::npos);
  BOOST_CHECK_LE(p.signature.size(), 144u);
  // ECDSA signatures are randomised; both verify.
  auto again = rt::sign_message(c.a, p.message);
  BOOST_CHECK_NE(again, p.signature);
  BOOST_CHECK_NO_THROW(rt::verify_node_identity(c.a.ca, p.certificate, "node-a", p.message, again));
  // A key with a passphrase signs only with it.
  auto encrypted = c.a;
  encrypted.key = c.root / "nodes" / "node-a-key-encrypted.pem";
  encrypted.passphrase = "correct horse";
  {
    FILE* in = std::fopen(c.a.key.c_str(), "r");
    BOOST_REQUIRE(in != nullptr);
    EVP_PKEY* key = PEM_read_PrivateKey(in, nullptr, nullptr, nullptr);
    std::fclose(in);
    FILE* out = std::fopen(encrypted.key.c_str(), "w");
    BOOST_REQUIRE(key != nullptr && out != nullptr);
    BOOST_REQUIRE(PEM_write_PKCS8PrivateKey(out, key, EVP_aes_256_cbc(), nullptr, 0, nullptr,
                                            encrypted.passphrase.data()) == 1);
    std::fclose(out);
    EVP_PKEY_free(key);
  }
  auto sig = rt::sign_message(encrypted, p.message);
  BOOST_CHECK_NO_THROW(rt::verify_node_identity(c.a.ca, p.certificate, "node-a", p.message, sig));
  auto no_pass = encrypted;
  no_pass.passphrase.clear();
  BOOST_CHECK(refused([&] { rt::sign_message(no_pass, p.message); }, "need a passphrase"));
  auto wrong_pass = encrypted;
  wrong_pass.passphrase = "battery staple";
  BOOST_CHECK(refused([&] { rt::sign_message(wrong_pass, p.message); }, "cannot be read"));
}

BOOST_AUTO_TEST_CASE(other_key_types_sign_and_verify) {
  const auto& c = certs();
  auto message = rt::join_proof_message(rt::random_nonce_hex(), "node-a", supervisor);
  // RSA (SHA-256, PKCS#1 v1.5) and Ed25519 (no separate digest): a node-a
  // certificate of the cluster CA for each key.
  for (const char* type : {"RSA", "ED25519"}) {
    EVP_PKEY* key = std::string{type} == "RSA"
                        ? EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<std::size_t>(2048))
                        : EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
    BOOST_REQUIRE(key != nullptr);
    rt::tls_files files = c.a;
    files.key = c.root / "nodes" / (std::string{"node-a-"} + type + "-key.pem");
    write_key(key, files.key);
    auto cert = resigned(c.a.certificate, c.root / "ca1", key, false);
    EVP_PKEY_free(key);
    auto sig = rt::sign_message(files, message);
    BOOST_TEST_MESSAGE(type << " signature: " << sig.size() / 2 << " bytes");
    BOOST_CHECK_NO_THROW(rt::verify_node_identity(c.a.ca, cert, "node-a", message, sig));
    BOOST_CHECK(identity_refused(cert, "node-a", message + "x", sig, "signature does not verify"));
    // The EC node-a key's signature does not verify with this key.
    BOOST_CHECK(identity_refused(cert, "node-a", message, rt::sign_message(c.a, message),
                                 "signature does not verify"));
  }
}

BOOST_AUTO_TEST_CASE(certificate_of_another_node_is_refused) {
  const auto& c = certs();
  auto nonce = rt::random_nonce_hex();
  // node-b, with its own certificate and key, claims to be node-a.
  auto p = prove(c.b, nonce, "node-a");
  BOOST_CHECK(identity_refused(p.certificate, "node-a", p.message, p.signature,
                               "certificate CN 'node-b' does not match node name 'node-a'"));
  // node-b presents node-a's (public) certificate but can only sign with its
  // own key.
  auto stolen = p;
  stolen.certificate = rt::read_certificate_pem(c.a.certificate);
  BOOST_CHECK(identity_refused(stolen.certificate, "node-a", stolen.message, stolen.signature,
                               "signature does not verify"));
  // Name comparison is exact.
  auto own = prove(c.a, nonce, "node-a");
  BOOST_CHECK(identity_refused(own.certificate, "Node-A", own.message, own.signature,
                               "does not match node name 'Node-A'"));
}

BOOST_AUTO_TEST_CASE(certificate_of_another_ca_is_refused) {
  const auto& c = certs();
  auto nonce = rt::random_nonce_hex();
  // A certificate named node-a, signed by another CA, with its own key.
  auto p = prove(c.foreign_a, nonce, "node-a");
  BOOST_CHECK(identity_refused(p.certificate, "node-a", p.message, p.signature,
                               "not signed by the cluster CA"));
  // A CA certificate, the cluster's or another, is never a node certificate.
  auto ca_pem = rt::read_certificate_pem(c.a.ca);
  BOOST_CHECK(
      identity_refused(ca_pem, "troupe cluster CA", p.message, p.signature, "is a CA certificate"));
  auto foreign_ca_pem = rt::read_certificate_pem(c.foreign_a.ca);
  BOOST_CHECK(identity_refused(foreign_ca_pem, "troupe cluster CA", p.message, p.signature,
                               "is a CA certificate"));
  // Expired, though signed by the cluster CA.
  auto own = prove(c.a, nonce, "node-a");
  auto expired = resigned(c.a.certificate, c.root / "ca1", nullptr, true);
  BOOST_CHECK(identity_refused(expired, "node-a", own.message, own.signature, "expired"));
  // A missing CA file.
  BOOST_CHECK(refused(
      [&] {
        rt::verify_node_identity(c.root / "no-ca.pem", own.certificate, "node-a", own.message,
                                 own.signature);
      },
      "no-ca.pem"));
}

BOOST_AUTO_TEST_CASE(signature_of_another_message_is_refused) {
  const auto& c = certs();
  rt::challenge_book book;
  auto first = book.issue();
  auto second = book.issue();
  BOOST_CHECK_NE(first, second);
  auto old = prove(c.a, first, "node-a");
  auto now = rt::join_proof_message(second, "node-a", supervisor);
  // The recorded signature for the first nonce does not prove the second.
  BOOST_CHECK(
      identity_refused(old.certificate, "node-a", now, old.signature, "signature does not verify"));
  // Nor for another supervisor (a relayed challenge).
  auto relayed = rt::join_proof_message(first, "node-a", "supervisor-2");
  BOOST_CHECK(identity_refused(old.certificate, "node-a", relayed, old.signature,
                               "signature does not verify"));
  // A flipped bit and a truncated signature.
  auto flipped = old.signature;
  flipped[20] = flipped[20] == '0' ? '1' : '0';
  BOOST_CHECK(identity_refused(old.certificate, "node-a", old.message, flipped,
                               "signature does not verify"));
  BOOST_CHECK(identity_refused(old.certificate, "node-a", old.message,
                               old.signature.substr(0, old.signature.size() - 2),
                               "signature does not verify"));
  // The fields cannot be shifted into each other.
  BOOST_CHECK_NE(rt::join_proof_message(first, "node-a", "bx"),
                 rt::join_proof_message(first, "node-ab", "x"));
  BOOST_CHECK(refused([&] { rt::join_proof_message(first, "node\na", supervisor); }, "newlines"));
  BOOST_CHECK(refused([&] { rt::join_proof_message(first, "", supervisor); }, "node name"));
  BOOST_CHECK(refused([&] { rt::join_proof_message(first, "node-a", ""); }, "supervisor id"));
  BOOST_CHECK(refused([&] { rt::join_proof_message("abc", "node-a", supervisor); }, "nonce"));
  BOOST_CHECK(refused([&] { rt::join_proof_message(std::string(64, 'g'), "node-a", supervisor); },
                      "nonce"));
}

BOOST_AUTO_TEST_CASE(nonce_is_single_use) {
  rt::challenge_book book;
  auto nonce = book.issue();
  BOOST_CHECK_EQUAL(book.outstanding(), 1u);
  BOOST_CHECK(book.consume(nonce));
  BOOST_CHECK(!book.consume(nonce)); // replay
  BOOST_CHECK_EQUAL(book.outstanding(), 0u);
  BOOST_CHECK(!book.consume(rt::random_nonce_hex())); // never issued
  BOOST_CHECK(!book.consume(""));
  // Another book (another supervisor) knows none of this one's nonces.
  rt::challenge_book other;
  auto mine = book.issue();
  BOOST_CHECK(!other.consume(mine));
  BOOST_CHECK(book.consume(mine));
  // Nonces do not repeat.
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i)
    seen.insert(rt::random_nonce_hex());
  BOOST_CHECK_EQUAL(seen.size(), 1000u);
}

BOOST_AUTO_TEST_CASE(expired_nonce_is_refused) {
  manual_clock clock;
  rt::challenge_book book{10s, 16, clock.function()};
  auto late = book.issue();
  auto in_time = book.issue();
  clock.advance(9999ms);
  BOOST_CHECK(book.consume(in_time));
  clock.advance(1ms);
  BOOST_CHECK(!book.consume(late));
  BOOST_CHECK_EQUAL(book.outstanding(), 0u);
  // Issued later, still valid after the first ones expired.
  auto fresh = book.issue();
  clock.advance(5s);
  BOOST_CHECK_EQUAL(book.outstanding(), 1u);
  BOOST_CHECK(book.consume(fresh));
  // Bad settings.
  BOOST_CHECK_THROW((rt::challenge_book{0ms, 16}), rt::input_error);
  BOOST_CHECK_THROW((rt::challenge_book{10s, 0}), rt::input_error);
  BOOST_CHECK_THROW((rt::challenge_book{10s, 16, nullptr}), rt::input_error);
}

BOOST_AUTO_TEST_CASE(capacity_drops_the_oldest) {
  manual_clock clock;
  rt::challenge_book book{1min, 4, clock.function()};
  std::vector<std::string> nonces;
  for (int i = 0; i < 6; ++i)
    nonces.push_back(book.issue());
  BOOST_CHECK_EQUAL(book.outstanding(), 4u);
  BOOST_CHECK(!book.consume(nonces[0]));
  BOOST_CHECK(!book.consume(nonces[1]));
  for (int i = 2; i < 6; ++i)
    BOOST_CHECK(book.consume(nonces[i]));
  // A copy is an independent book (value type).
  auto n = book.issue();
  auto copy = book;
  BOOST_CHECK(copy.consume(n));
  BOOST_CHECK(book.consume(n));
  BOOST_CHECK(!copy.consume(n));
}

BOOST_AUTO_TEST_CASE(garbage_gives_input_error) {
  const auto& c = certs();
  auto nonce = rt::random_nonce_hex();
  auto p = prove(c.a, nonce, "node-a");
  auto verify = [&](const std::string& pem, const std::string& sig) {
    rt::verify_node_identity(c.a.ca, pem, "node-a", p.message, sig);
  };
  // Certificates.
  BOOST_CHECK(refused([&] { verify("", p.signature); }, "not a PEM certificate"));
  BOOST_CHECK(refused([&] { verify("garbage", p.signature); }, "not a PEM certificate"));
  BOOST_CHECK(refused([&] { verify(std::string(100000, 'A'), p.signature); }, "larger than"));
  auto key_pem = [&] {
    std::ifstream f(c.a.key);
    return std::string(std::istreambuf_iterator<char>(f), {});
  }();
  BOOST_CHECK(refused([&] { verify(key_pem, p.signature); }, "not a PEM certificate"));
  auto truncated = p.certificate.substr(0, p.certificate.size() / 2);
  BOOST_CHECK(refused([&] { verify(truncated, p.signature); }, "not a PEM certificate"));
  auto broken_body = p.certificate;
  broken_body[100] = '!';
  BOOST_CHECK(refused([&] { verify(broken_body, p.signature); }, ""));
  // Signatures.
  BOOST_CHECK(refused([&] { verify(p.certificate, ""); }, "hex digits"));
  BOOST_CHECK(refused([&] { verify(p.certificate, "zz"); }, "hex digits"));
  BOOST_CHECK(refused([&] { verify(p.certificate, "abc"); }, "hex digits"));
  BOOST_CHECK(refused([&] { verify(p.certificate, std::string(5000, 'a')); }, "hex digits"));
  BOOST_CHECK(refused([&] { verify(p.certificate, "00"); }, "signature does not verify"));
  BOOST_CHECK(
      refused([&] { verify(p.certificate, std::string(144, 'f')); }, "signature does not verify"));
  // Uppercase hex of the right signature is the same bytes.
  auto upper = p.signature;
  for (auto& ch : upper)
    ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  BOOST_CHECK_NO_THROW(verify(p.certificate, upper));
  // Files.
  BOOST_CHECK(refused([&] { rt::read_certificate_pem(c.root / "missing.pem"); }, "missing.pem"));
  BOOST_CHECK(refused([&] { rt::read_certificate_pem(c.a.key); }, "not a PEM certificate"));
  auto no_key = c.a;
  no_key.key = c.root / "missing-key.pem";
  BOOST_CHECK(refused([&] { rt::sign_message(no_key, "x"); }, "missing-key.pem"));
  auto cert_as_key = c.a;
  cert_as_key.key = c.a.certificate;
  BOOST_CHECK(refused([&] { rt::sign_message(cert_as_key, "x"); }, "cannot be read"));
  // Random bytes and mutations of a valid certificate: input_error or, for a
  // mutation OpenSSL ignores, acceptance; never anything else.
  std::mt19937 rng{42};
  for (int i = 0; i < 300; ++i) {
    std::string junk(rng() % 3000, '\0');
    for (auto& ch : junk)
      ch = static_cast<char>(rng());
    auto mutated = p.certificate;
    for (int k = 0; k < 1 + i % 4; ++k)
      mutated[rng() % mutated.size()] = static_cast<char>(rng());
    std::string hex_junk(2 * (rng() % 80), '0');
    for (auto& ch : hex_junk)
      ch = "0123456789abcdef"[rng() % 16];
    for (const auto* pem : {&junk, &mutated}) {
      try {
        verify(*pem, i % 2 ? p.signature : hex_junk);
      } catch (const rt::input_error&) {
      } catch (const std::exception& e) {
        BOOST_ERROR("round " << i << ": not an input_error: " << e.what());
      }
    }
  }
}
