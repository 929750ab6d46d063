#include "apps/troupe/bench/bench_local_cluster.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <iterator>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "actors/plan/schedule.hpp"
#include "apps/troupe/bench/bench_util.hpp"

namespace troupe::apps {

namespace fs = std::filesystem;
using actors::schedule_kind;

namespace {

/// GET `path` from 127.0.0.1:`port` (the supervisor's status server answers
/// one request per connection and closes it): the body of a 200 reply.
std::string http_get(int port, const std::string& path) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0)
    throw std::runtime_error("socket() failed");
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string text;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
    const std::string req =
        "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size())) {
      char buf[16384];
      for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;)
        text.append(buf, static_cast<std::size_t>(n));
    }
  }
  ::close(fd);
  const auto body = text.find("\r\n\r\n");
  if (text.rfind("HTTP/1.1 200", 0) != 0 || body == std::string::npos)
    throw std::runtime_error("GET http://127.0.0.1:" + std::to_string(port) + path +
                             " failed: " + text.substr(0, 200));
  return text.substr(body + 4);
}

/// utime + stime of process `pid` in seconds (/proc/PID/stat), 0 when gone.
double process_cpu_seconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  const auto close = stat.rfind(')'); // the command name may hold spaces
  if (close == std::string::npos)
    return 0;
  std::istringstream fields(stat.substr(close + 2));
  std::string f;
  unsigned long long utime = 0, stime = 0;
  for (int i = 0; i < 11 && fields >> f; ++i) {
  } // state .. cmajflt
  fields >> utime >> stime;
  return static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

} // namespace

local_cluster::local_cluster(const fs::path& dir, int nodes, int threads_per_device, int jobs)
    : dir_(dir), exe_(self_exe().string()), threads_per_device_(threads_per_device) {
  start_supervisor(nodes, jobs);
  for (int k = 0; k < nodes; ++k)
    add_node("node-" + std::to_string(k));
}

local_cluster::local_cluster(const fs::path& dir, const std::vector<std::string>& names,
                             int threads_per_device)
    : local_cluster(dir, names, threads_per_device, {}) {}

local_cluster::local_cluster(const fs::path& dir, const std::vector<std::string>& names,
                             int threads_per_device, const std::vector<node_launch>& launches)
    : dir_(dir), exe_(self_exe().string()), threads_per_device_(threads_per_device) {
  start_supervisor(static_cast<int>(names.size()), 0);
  for (std::size_t k = 0; k < names.size(); ++k) {
    add_node(names[k], k < launches.size() ? launches[k] : node_launch{});
    wait_ready(k + 1, std::chrono::seconds(30));
  }
}

local_cluster::~local_cluster() {
  // A node stopped by SIGSTOP would hold SIGTERM pending until killed.
  for (auto& [name, node] : nodes_)
    if (!node->wait_for(std::chrono::milliseconds(0)))
      ::kill(node->pid(), SIGCONT);
}

void local_cluster::start_supervisor(int nodes, int jobs) {
  const auto info = dir_ / "supervisor.json";
  supervisor_ = std::make_unique<child_process>(
      std::vector<std::string>{exe_, "--log-level", "warn", "supervisor", "--listen", "127.0.0.1:0",
                               "--expect-nodes", std::to_string(nodes), "--insecure-plain",
                               "--info-file", info.string(), "--jobs", std::to_string(jobs)},
      dir_ / "supervisor.log");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!fs::exists(info)) {
    if (supervisor_->wait_for(std::chrono::milliseconds(20)))
      throw std::runtime_error("the supervisor exited:\n" + supervisor_->log_tail());
    if (std::chrono::steady_clock::now() > deadline)
      throw std::runtime_error("the supervisor did not start within 30 s:\n" +
                               supervisor_->log_tail());
  }
  std::ifstream in(info);
  const auto j = nlohmann::json::parse(in);
  port_ = j.at("port").get<int>();
  status_port_ = j.at("status_port").get<int>();
}

void local_cluster::add_node(const std::string& name, const node_launch& how) {
  auto argv = how.prefix;
  argv.insert(argv.end(),
              {exe_, "--log-level", "warn", "node", "--supervisor", address(), "--insecure-plain",
               "--name", name, "--devices", "cpu:1x" + std::to_string(threads_per_device_)});
  if (!how.measure)
    argv.push_back("--no-measure");
  nodes_.emplace_back(name,
                      std::make_unique<child_process>(argv, dir_ / ("node-" + name + ".log")));
}

void local_cluster::wait_ready(std::size_t count, std::chrono::milliseconds timeout) const {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    std::size_t ready = 0;
    const auto st = status();
    for (const auto& n : st.at("nodes"))
      ready += n.value("ready", false) ? 1 : 0;
    if (ready >= count)
      return;
    if (std::chrono::steady_clock::now() > deadline) {
      std::string logs;
      for (const auto& [name, node] : nodes_)
        logs += "\nnode " + name + ":\n" + node->log_tail(600);
      throw std::runtime_error(std::to_string(ready) + " of " + std::to_string(count) +
                               " nodes ready after " + std::to_string(timeout.count()) + " ms:\n" +
                               supervisor_->log_tail() + logs);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

double local_cluster::cpu_seconds() {
  double sum = process_cpu_seconds(supervisor_->pid());
  for (auto& [name, node] : nodes_)
    if (!node->wait_for(std::chrono::milliseconds(0)))
      sum += process_cpu_seconds(node->pid());
  return sum;
}

nlohmann::json local_cluster::status() const {
  return nlohmann::json::parse(http_get(status_port_, "/status"));
}

pid_t local_cluster::node_pid(const std::string& name) {
  for (const auto& [n, node] : nodes_)
    if (n == name && !node->wait_for(std::chrono::milliseconds(0)))
      return node->pid();
  throw std::runtime_error("no node '" + name + "' is running");
}

std::unique_ptr<child_process> local_cluster::submit(const std::vector<std::string>& args,
                                                     const std::string& name) const {
  std::vector<std::string> a{exe_,      "--log-level",     "warn", "train", "--supervisor",
                             address(), "--insecure-plain"};
  a.insert(a.end(), args.begin(), args.end());
  return std::make_unique<child_process>(a, dir_ / (name + ".log"));
}

nlohmann::json local_cluster::train(const actors::train_options& o, int index) {
  const auto report = dir_ / ("report-" + std::to_string(index) + ".json");
  std::vector<std::string> a{
      "--report", report.string(), "--model", o.model, "--data", fs::absolute(o.data_dir).string(),
      "--batch", std::to_string(o.batch), "--optimizer", o.optimizer, "--lr", number(o.lr), "--pp",
      std::to_string(o.stages), "--microbatches", std::to_string(o.microbatches), "--schedule",
      std::string{actors::to_string(o.schedule)}, "--steps", std::to_string(o.max_steps), "--trace",
      o.trace_file, "--no-eval", "--no-progress",
      // schedules are compared on the split asked for
      "--balance", "off"};
  if (o.schedule == schedule_kind::interleaved)
    a.insert(a.end(), {"--virtual-stages", std::to_string(o.virtual_stages)});
  if (o.slow_stage >= 0)
    a.insert(a.end(), {"--slow-stage", std::to_string(o.slow_stage), "--slow-factor",
                       number(o.slow_factor)});
  auto client = submit(a, "client-" + std::to_string(index));
  auto status = client->wait_for(std::chrono::minutes(10));
  if (status != 0)
    throw std::runtime_error(
        "the job " + (status ? "failed (exit " + std::to_string(*status) + ")" : "timed out") +
        ":\n" + client->log_tail() + "\nsupervisor log:\n" + supervisor_->log_tail());
  std::ifstream in(report);
  return nlohmann::json::parse(in);
}

} // namespace troupe::apps
