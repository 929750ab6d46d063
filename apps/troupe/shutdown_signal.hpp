#pragma once

#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <functional>
#include <thread>

namespace troupe::apps {

/// SIGINT/SIGTERM as an event: the constructor blocks them in the calling
/// thread, so every thread started afterwards (CAF's, Asio's) inherits the
/// mask and none is interrupted mid-syscall; watch() starts a thread that
/// waits for one and calls the handler once. Construct it first in main.
class shutdown_signal {
public:
  shutdown_signal() {
    sigemptyset(&set_);
    sigaddset(&set_, SIGINT);
    sigaddset(&set_, SIGTERM);
    sigaddset(&set_, SIGUSR2); // wakes the watcher for destruction
    pthread_sigmask(SIG_BLOCK, &set_, nullptr);
  }
  ~shutdown_signal() {
    if (watcher_.joinable()) {
      pthread_kill(watcher_.native_handle(), SIGUSR2);
      watcher_.join();
    }
    pthread_sigmask(SIG_UNBLOCK, &set_, nullptr);
  }
  shutdown_signal(const shutdown_signal&) = delete;
  shutdown_signal& operator=(const shutdown_signal&) = delete;

  /// `handler(signal)` runs on the watcher thread for the first SIGINT/SIGTERM.
  void watch(std::function<void(int)> handler) {
    watcher_ = std::thread{[this, handler = std::move(handler)] {
      int sig = 0;
      if (sigwait(&set_, &sig) == 0 && sig != SIGUSR2) {
        received_ = true;
        handler(sig);
      }
    }};
  }

  /// Whether SIGINT or SIGTERM came.
  bool received() const { return received_; }

private:
  sigset_t set_{};
  std::atomic<bool> received_{false};
  std::thread watcher_;
};

} // namespace troupe::apps
