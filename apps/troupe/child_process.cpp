#include "apps/troupe/child_process.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace troupe::apps {

child_process::child_process(const std::vector<std::string>& argv, std::filesystem::path log)
    : log_(std::move(log)) {
  std::vector<char*> args;
  for (const auto& a : argv)
    args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  int rc = argv.empty() ? EINVAL : posix_spawn(&pid_, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) {
    pid_ = -1;
    throw std::runtime_error("cannot start " + (argv.empty() ? std::string{"?"} : argv[0]) + ": " +
                             std::strerror(rc));
  }
}

child_process::~child_process() {
  stop();
}

std::optional<int> wait_for_exit(pid_t pid, std::chrono::milliseconds timeout,
                                 std::chrono::milliseconds poll) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    int ws = 0;
    auto r = ::waitpid(pid, &ws, WNOHANG);
    if (r == pid)
      return WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + (WIFSIGNALED(ws) ? WTERMSIG(ws) : 0);
    if (r < 0 && errno != EINTR)
      return -1; // not our child any more: nothing to wait for
    if (std::chrono::steady_clock::now() >= deadline)
      return std::nullopt;
    std::this_thread::sleep_for(poll);
  }
}

std::optional<int> child_process::wait_for(std::chrono::milliseconds timeout) {
  if (!status_ && pid_ >= 0)
    status_ = wait_for_exit(pid_, timeout, std::chrono::milliseconds(10));
  return status_;
}

void child_process::stop(std::chrono::milliseconds grace) {
  if (pid_ < 0 || wait_for(std::chrono::milliseconds(0)))
    return;
  ::kill(pid_, SIGTERM);
  if (wait_for(grace))
    return;
  ::kill(pid_, SIGKILL);
  wait_for(std::chrono::seconds(10));
}

std::string child_process::log_tail(std::size_t bytes) const {
  std::ifstream in(log_, std::ios::binary);
  std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  return text.size() > bytes ? text.substr(text.size() - bytes) : text;
}

} // namespace troupe::apps
