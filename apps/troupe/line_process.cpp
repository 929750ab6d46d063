#include "apps/troupe/line_process.hpp"

#include "apps/troupe/child_process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <thread>
#include <utility>

extern char** environ;

namespace troupe::apps {

namespace {

[[noreturn]] void fail_errno(const std::string& what) {
  throw std::runtime_error(what + ": " + std::strerror(errno));
}

} // namespace

line_process::line_process(const std::vector<std::string>& argv, std::filesystem::path log)
    : log_(std::move(log)) {
  if (argv.empty())
    throw std::runtime_error("line_process: empty command line");
  int in[2], out[2];
  if (::pipe2(in, O_CLOEXEC) != 0)
    fail_errno("pipe");
  if (::pipe2(out, O_CLOEXEC) != 0) {
    ::close(in[0]);
    ::close(in[1]);
    fail_errno("pipe");
  }
  std::vector<char*> args;
  for (const auto& a : argv)
    args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in[0], 0); // dup2 clears close-on-exec
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  posix_spawn_file_actions_addopen(&fa, 2, log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  int rc = posix_spawn(&pid_, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  ::close(in[0]);
  ::close(out[1]);
  to_child_ = in[1];
  from_child_ = out[0];
  if (rc != 0) {
    pid_ = -1;
    ::close(std::exchange(to_child_, -1));
    ::close(std::exchange(from_child_, -1));
    throw std::runtime_error("cannot start " + argv[0] + ": " + std::strerror(rc));
  }
}

line_process::~line_process() {
  if (to_child_ >= 0)
    ::close(to_child_);
  if (from_child_ >= 0)
    ::close(from_child_);
  if (pid_ >= 0 && !status_) {
    ::kill(pid_, SIGKILL);
    reap(std::chrono::seconds(10));
  }
}

void line_process::send_line(const std::string& line) {
  auto text = line + "\n";
  const char* p = text.data();
  std::size_t left = text.size();
  while (left > 0) {
    auto k = ::write(to_child_, p, left);
    if (k < 0 && errno == EINTR)
      continue;
    if (k <= 0)
      throw std::runtime_error("process " + std::to_string(pid_) +
                               " does not take input any more: " + log_tail());
    p += k;
    left -= static_cast<std::size_t>(k);
  }
}

std::string line_process::read_line(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (auto nl = pending_.find('\n'); nl != std::string::npos) {
      auto line = pending_.substr(0, nl);
      pending_.erase(0, nl + 1);
      return line;
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0)
      throw std::runtime_error("process " + std::to_string(pid_) + " said nothing within " +
                               std::to_string(timeout.count()) + " ms; its log: " + log_tail());
    pollfd p{from_child_, POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(left.count()));
    if (r < 0 && errno != EINTR)
      fail_errno("poll");
    if (r <= 0)
      continue;
    char buf[4096];
    auto k = ::read(from_child_, buf, sizeof buf);
    if (k < 0 && errno == EINTR)
      continue;
    if (k <= 0)
      throw std::runtime_error("process " + std::to_string(pid_) +
                               " exited before answering; its log: " + log_tail());
    pending_.append(buf, static_cast<std::size_t>(k));
  }
}

int line_process::finish(std::chrono::milliseconds grace) {
  if (to_child_ >= 0)
    ::close(std::exchange(to_child_, -1));
  if (auto s = reap(grace))
    return *s;
  ::kill(pid_, SIGKILL);
  return reap(std::chrono::seconds(10)).value_or(-1);
}

std::optional<int> line_process::reap(std::chrono::milliseconds timeout) {
  if (!status_ && pid_ >= 0)
    status_ = wait_for_exit(pid_, timeout, std::chrono::milliseconds(5));
  return status_;
}

std::string line_process::log_tail(std::size_t bytes) const {
  std::ifstream in(log_, std::ios::binary);
  std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  return text.size() > bytes ? text.substr(text.size() - bytes) : text;
}

} // namespace troupe::apps
