#pragma once

// Owning handles for OpenSSL objects and error text, shared by the files that
// talk to OpenSSL directly (certs.cpp, tls_config.cpp). Internal to runtime.

#include <filesystem>
#include <memory>
#include <string>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

namespace troupe::runtime::openssl {

struct bio_free {
  void operator()(BIO* p) const noexcept { BIO_free(p); }
};
struct x509_free {
  void operator()(X509* p) const noexcept { X509_free(p); }
};
struct pkey_free {
  void operator()(EVP_PKEY* p) const noexcept { EVP_PKEY_free(p); }
};
using bio_ptr = std::unique_ptr<BIO, bio_free>;
using x509_ptr = std::unique_ptr<X509, x509_free>;
using pkey_ptr = std::unique_ptr<EVP_PKEY, pkey_free>;

/// 'path', for error messages.
inline std::string quoted(const std::filesystem::path& p) {
  std::string r{"'"};
  r += p.string();
  r += '\'';
  return r;
}

/// OpenSSL's queued errors as one line (and clears the queue).
inline std::string ssl_errors() {
  std::string msg;
  while (auto e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!msg.empty())
      msg += "; ";
    msg += buf;
  }
  return msg.empty() ? std::string{"no details from OpenSSL"} : msg;
}

} // namespace troupe::runtime::openssl
