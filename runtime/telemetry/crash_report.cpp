#include "runtime/telemetry/crash_report.hpp"

#include <execinfo.h>
#include <signal.h>
#include <unistd.h>

#include <array>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>

namespace troupe::runtime {

namespace {

#if defined(__SANITIZE_ADDRESS__)
constexpr bool asan = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool asan = true;
#else
constexpr bool asan = false;
#endif
#else
constexpr bool asan = false;
#endif

/// Written once by install_crash_report, before any handler can run; read
/// by the handlers (async-signal-safe: no allocation, only write(2)).
std::array<char, 160> g_prefix{};

void write_str(const char* s) {
  auto n = std::strlen(s);
  while (n > 0) {
    auto w = ::write(STDERR_FILENO, s, n);
    if (w <= 0)
      return;
    s += w;
    n -= static_cast<std::size_t>(w);
  }
}

/// Decimal text of v into buf (no allocation).
const char* decimal(long v, std::array<char, 24>& buf) {
  char* p = buf.data() + buf.size() - 1;
  *p = '\0';
  const bool neg = v < 0;
  unsigned long u = neg ? 0ul - static_cast<unsigned long>(v) : static_cast<unsigned long>(v);
  do {
    *--p = static_cast<char>('0' + u % 10);
    u /= 10;
  } while (u != 0);
  if (neg)
    *--p = '-';
  return p;
}

const char* signal_name(int sig) {
  switch (sig) {
  case SIGSEGV:
    return "SIGSEGV";
  case SIGBUS:
    return "SIGBUS";
  case SIGFPE:
    return "SIGFPE";
  case SIGILL:
    return "SIGILL";
  case SIGABRT:
    return "SIGABRT";
  case SIGINT:
    return "SIGINT";
  case SIGTERM:
    return "SIGTERM";
  default:
    return "signal";
  }
}

void reraise(int sig) {
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  sigaction(sig, &dfl, nullptr);
  raise(sig);
}

void on_fatal(int sig) {
  std::array<char, 24> num{};
  write_str("fatal: ");
  write_str(g_prefix.data());
  write_str(" (pid ");
  write_str(decimal(static_cast<long>(::getpid()), num));
  write_str("): signal ");
  write_str(decimal(sig, num));
  write_str(" (");
  write_str(signal_name(sig));
  write_str("); backtrace:\n");
  std::array<void*, 48> frames{};
  const int n = backtrace(frames.data(), static_cast<int>(frames.size()));
  backtrace_symbols_fd(frames.data(), n, STDERR_FILENO);
  reraise(sig);
}

void on_interrupt(int sig) {
  std::array<char, 24> num{};
  write_str(g_prefix.data());
  write_str(" (pid ");
  write_str(decimal(static_cast<long>(::getpid()), num));
  write_str("): interrupted by ");
  write_str(signal_name(sig));
  write_str("\n");
  reraise(sig);
}

void on_terminate() {
  std::string what = "no exception";
  if (auto e = std::current_exception()) {
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& x) {
      what = x.what();
    } catch (...) {
      what = "an exception of unknown type";
    }
  }
  write_str("fatal: ");
  write_str(g_prefix.data());
  write_str(": terminate called: ");
  write_str(what.c_str());
  write_str("\n");
  std::abort(); // the SIGABRT handler prints the backtrace
}

void install(int sig, void (*handler)(int), int flags) {
  struct sigaction sa {};
  sa.sa_handler = handler;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = flags;
  sigaction(sig, &sa, nullptr);
}

} // namespace

void install_crash_report(const std::string& name) {
  std::strncpy(g_prefix.data(), name.c_str(), g_prefix.size() - 1);
  // backtrace(3) loads libgcc on its first call, which allocates: do it now,
  // not first inside a signal handler.
  std::array<void*, 2> warm{};
  backtrace(warm.data(), static_cast<int>(warm.size()));
  std::set_terminate(on_terminate);
  if (!asan) {
    // A stack overflow needs its own stack to report on (the main thread's).
    static std::array<char, 64 * 1024> alt_stack{};
    stack_t ss{};
    ss.ss_sp = alt_stack.data();
    ss.ss_size = alt_stack.size();
    sigaltstack(&ss, nullptr);
    for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT})
      install(sig, on_fatal, SA_ONSTACK | SA_RESETHAND);
  }
  for (int sig : {SIGINT, SIGTERM})
    install(sig, on_interrupt, SA_RESETHAND);
}

} // namespace troupe::runtime
