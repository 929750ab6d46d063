// OpenSSL requires the calling thread's error queue to be empty before
// SSL_read/SSL_write/SSL_accept/SSL_connect (SSL_get_error reads it to tell
// what went wrong), and caf_openssl 0.17 never clears it. All TLS connections
// of a process run on CAF's one multiplexer thread, so an error left behind
// by one connection (a peer that died) made SSL_get_error report a fatal
// SSL_ERROR_SSL for the next harmless WANT_READ on every other connection,
// and caf_openssl closed them all: one client exiting cut every node off its
// supervisor. These definitions interpose on libssl's functions for this
// executable (the dynamic linker binds libcaf_openssl's calls to them) and
// clear the queue first, as OpenSSL documents, then call the real ones. An
// executable's definitions win over libssl's; configure_tls references
// tls_io_guard_linked() so this object is always linked where TLS is used.
// Tested by tests/cluster/cluster_test.py (a client exiting leaves the nodes
// connected).

#include <dlfcn.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

namespace {

template <class F>
F real(const char* name) {
  static_assert(sizeof(F) == sizeof(void*));
  void* p = dlsym(RTLD_NEXT, name);
  F f;
  __builtin_memcpy(&f, &p, sizeof f);
  return f;
}

} // namespace

namespace troupe::runtime {
bool tls_io_guard_linked() noexcept {
  return true;
}
} // namespace troupe::runtime

extern "C" {

int SSL_read(SSL* ssl, void* buf, int num) {
  static const auto f = real<int (*)(SSL*, void*, int)>("SSL_read");
  ERR_clear_error();
  return f(ssl, buf, num);
}

int SSL_write(SSL* ssl, const void* buf, int num) {
  static const auto f = real<int (*)(SSL*, const void*, int)>("SSL_write");
  ERR_clear_error();
  return f(ssl, buf, num);
}

int SSL_accept(SSL* ssl) {
  static const auto f = real<int (*)(SSL*)>("SSL_accept");
  ERR_clear_error();
  return f(ssl);
}

int SSL_connect(SSL* ssl) {
  static const auto f = real<int (*)(SSL*)>("SSL_connect");
  ERR_clear_error();
  return f(ssl);
}

} // extern "C"
