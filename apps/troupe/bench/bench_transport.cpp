// `troupe bench transport`: a tensor of 4 KiB .. 64 MiB sent from this
// process to a receiver process (this executable re-run as the hidden
// `troupe bench transport-peer`) over 127.0.0.1, which acknowledges each one
// with a small message; the sender waits for the acknowledgement before
// sending the next (send/ack, one in flight). Three paths in the same run:
//   dataplane: runtime::transport::data_plane, HMAC-authenticated connection,
//              scatter/gather write from the tensor's storage, received into
//              a fresh storage per tensor;
//   caf:       caf::io::middleman remote_actor/publish, the tensor inside a CAF
//              message (bulk apply_raw serialisation), the reply is the ack;
//   tcp:       a plain blocking socket, 8-byte length + bytes, 1-byte ack,
//              received into a fresh runtime::storage per message (what a
//              receiver that hands the bytes on must do, from the same
//              allocator as the data plane), and tcp_reuse: the same into one
//              reused buffer (an upper bound no tensor transport reaches).
// GB/s = payload bytes / 1e9 / seconds per round trip; best of --reps rounds,
// the paths' rounds interleaved so that a change of machine load hits all.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <nlohmann/json.hpp>

#include "apps/troupe/bench/bench_transport.hpp"
#include "apps/troupe/bench/bench_util.hpp"
#include "apps/troupe/line_process.hpp"
#include "runtime/error.hpp"
#include "runtime/io/temp_dir.hpp"
#include "actors/protocol/system_config.hpp"
#include "runtime/net/tensor_inspect.hpp"
#include "runtime/net/transport/data_plane.hpp"
#include "runtime/storage.hpp"
#include "runtime/telemetry/wake_probe.hpp"
#include "runtime/tensor.hpp"

namespace troupe::apps {

namespace {

namespace fs = std::filesystem;
namespace rt = troupe::runtime;
namespace tp = troupe::runtime::transport;
using clock_type = std::chrono::steady_clock;

constexpr const char* receiver_name = "bench-receiver";
constexpr const char* sender_name = "bench-sender";
constexpr std::size_t smallest_size = 4096;
/// A round trip that takes longer means the receiver is stuck: give up.
constexpr std::chrono::seconds ack_timeout{60};

struct transport_flags {
  std::string json;
  int reps = 5;
  std::size_t min_size = smallest_size;
  std::size_t max_size = std::size_t{64} << 20;
};

[[noreturn]] void fail(const std::string& what) {
  throw std::runtime_error("bench transport: " + what);
}

bool send_all(int fd, const void* p, std::size_t n) {
  const auto* b = static_cast<const char*>(p);
  while (n > 0) {
    auto k = ::send(fd, b, n, MSG_NOSIGNAL);
    if (k < 0 && errno == EINTR)
      continue;
    if (k <= 0)
      return false;
    b += k;
    n -= static_cast<std::size_t>(k);
  }
  return true;
}

bool recv_all(int fd, void* p, std::size_t n) {
  auto* b = static_cast<char*>(p);
  while (n > 0) {
    auto k = ::recv(fd, b, n, 0);
    if (k < 0 && errno == EINTR)
      continue;
    if (k <= 0)
      return false;
    b += k;
    n -= static_cast<std::size_t>(k);
  }
  return true;
}

void no_delay(int fd) {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/// The system's TCP congestion control: with bbr, loopback sends are paced by
/// a bandwidth estimate that differs per connection, a source of run-to-run
/// spread for every path.
std::string congestion_control() {
  std::ifstream in("/proc/sys/net/ipv4/tcp_congestion_control");
  std::string cc;
  in >> cc;
  return in ? cc : "?";
}

// ---------------------------------------------------------------- receiver

/// Top bit of the TCP baseline's length word: receive into the reused buffer.
constexpr std::uint64_t reuse_bit = std::uint64_t{1} << 63;

/// TCP baseline server: for each message an 8-byte header (length | reuse
/// bit), the bytes, then a 1-byte ack.
void tcp_serve(int listen_fd) {
  int fd = ::accept(listen_fd, nullptr, nullptr);
  if (fd < 0)
    return;
  no_delay(fd);
  std::vector<std::byte> reused;
  for (;;) {
    std::uint64_t hdr = 0;
    if (!recv_all(fd, &hdr, sizeof hdr))
      break;
    auto n = static_cast<std::size_t>(hdr & ~reuse_bit);
    if (n > rt::default_max_tensor_bytes)
      break;
    if ((hdr & reuse_bit) != 0) {
      if (reused.size() < n)
        reused.resize(n);
      if (!recv_all(fd, reused.data(), n))
        break;
    } else {
      // A fresh block per message, from the allocator the data plane uses,
      // dropped once received (as if handed on): only the transport differs.
      auto fresh = rt::storage::allocate(n);
      if (!recv_all(fd, fresh->data(), n))
        break;
    }
    char ack = 1;
    if (!send_all(fd, &ack, 1))
      break;
  }
  ::close(fd);
}

int listen_loopback(std::uint16_t& port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd, 4) != 0)
    fail(std::string{"tcp listen: "} + std::strerror(errno));
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  port = ntohs(a.sin_port);
  return fd;
}

/// `troupe bench transport-peer --key-file F`: serves the three paths, prints
/// "PORTS dataplane caf tcp" and lives until its stdin closes.
int run_receiver(const std::string& key_file) {
  // Data plane: acknowledge every tensor with an empty tensor (a bare frame
  // header), same id.
  std::atomic<tp::data_plane*> self{nullptr};
  auto ack = rt::tensor::empty(rt::dtype::u8, {0});
  tp::data_plane_callbacks cb;
  cb.on_receive = [&](const std::string& peer, std::uint64_t id, rt::tensor) {
    self.load()->send(peer, id, ack);
  };
  tp::data_plane_options o;
  o.name = receiver_name;
  o.key = tp::load_key(key_file);
  tp::data_plane dp{o, cb};
  self = &dp;
  auto dp_port = dp.listen("127.0.0.1", 0);

  // CAF: a published actor that answers with the byte count.
  troupe::actors::system_config cfg{1};
  cfg.load<caf::io::middleman>();
  caf::actor_system sys{cfg};
  auto receiver = sys.spawn([]() -> caf::behavior {
    return {[](const rt::tensor& t) -> std::uint64_t { return t.nbytes(); }};
  });
  auto caf_port = sys.middleman().publish(receiver, 0, "127.0.0.1");
  if (!caf_port)
    fail("CAF publish: " + sys.render(caf_port.error()));

  std::uint16_t tcp_port = 0;
  int lfd = listen_loopback(tcp_port);
  std::thread tcp{[lfd] { tcp_serve(lfd); }};

  std::printf("PORTS %u %u %u\n", dp_port, *caf_port, tcp_port);
  std::fflush(stdout);
  char c;
  while (::read(0, &c, 1) > 0) {
  }
  dp.stop();
  std::fflush(nullptr);
  std::_Exit(exit_ok); // a benchmark peer needs no orderly CAF or thread teardown
}

// ------------------------------------------------------------------ sender

/// The receiver's ports, as its first line reports them.
struct receiver_ports {
  std::uint16_t dp = 0, caf = 0, tcp = 0;
};

/// Starts the receiver: this executable as `bench transport-peer`, its stdin
/// a pipe whose closing tells it to exit, its stderr into `log`; waits for
/// its ports.
std::unique_ptr<line_process> start_receiver(const fs::path& key_file, const fs::path& log,
                                             receiver_ports& ports) {
  // Its own log at "error": the sender's hang-up at the end is expected.
  auto p = std::make_unique<line_process>(
      std::vector<std::string>{self_exe().string(), "--log-level", "error", "bench",
                               "transport-peer", "--key-file", key_file.string()},
      log);
  auto line = p->read_line(std::chrono::seconds(60));
  unsigned a = 0, b = 0, d = 0;
  if (std::sscanf(line.c_str(), "PORTS %u %u %u", &a, &b, &d) != 3)
    fail("the receiver did not report its ports (got '" + line + "')");
  ports = {static_cast<std::uint16_t>(a), static_cast<std::uint16_t>(b),
           static_cast<std::uint16_t>(d)};
  return p;
}

std::string human(std::size_t b) {
  if (b >= (std::size_t{1} << 20))
    return std::to_string(b >> 20) + " MiB";
  return std::to_string(b >> 10) + " KiB";
}

/// One path of the benchmark: a round trip and how often a timed round runs it.
struct bench_path {
  const char* name;
  int iters;
  std::function<void()> round_trip;
  double best_gbps = 0;
};

/// A TCP connection to the receiver's plain socket (no delay, acks awaited
/// up to ack_timeout).
int connect_tcp(std::uint16_t port) {
  int tfd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (tfd < 0 || ::connect(tfd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
    fail(std::string{"tcp connect: "} + std::strerror(errno));
  no_delay(tfd);
  timeval tv{static_cast<time_t>(ack_timeout.count()), 0};
  ::setsockopt(tfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return tfd;
}

/// Sends `t` with its size header (`reuse`: the receiver keeps one buffer)
/// and waits for the one-byte acknowledgement.
void tcp_round_trip(int tfd, const rt::tensor& t, bool reuse) {
  const auto size = t.nbytes();
  std::uint64_t hdr = size | (reuse ? reuse_bit : 0);
  iovec iov[2] = {{&hdr, sizeof hdr}, {const_cast<void*>(t.raw_data()), size}};
  msghdr m{};
  m.msg_iov = iov;
  m.msg_iovlen = 2;
  while (m.msg_iovlen > 0) {
    auto k = ::sendmsg(tfd, &m, MSG_NOSIGNAL);
    if (k < 0 && errno == EINTR)
      continue;
    if (k <= 0)
      fail("tcp send failed");
    auto done = static_cast<std::size_t>(k);
    while (done > 0 && m.msg_iovlen > 0) {
      if (done >= m.msg_iov[0].iov_len) {
        done -= m.msg_iov[0].iov_len;
        ++m.msg_iov;
        --m.msg_iovlen;
      } else {
        m.msg_iov[0].iov_base = static_cast<char*>(m.msg_iov[0].iov_base) + done;
        m.msg_iov[0].iov_len -= done;
        done = 0;
      }
    }
  }
  char ack = 0;
  if (!recv_all(tfd, &ack, 1))
    fail("tcp acknowledgement failed: " + std::string{std::strerror(errno)});
}

/// Warms every path up, then times `reps` interleaved rounds of each; keeps
/// each path's best GB/s.
template <class Paths>
void time_paths(Paths& paths, int reps, std::size_t size) {
  for (auto& p : paths)
    for (int i = 0; i < std::min(p.iters, 3); ++i)
      p.round_trip(); // warm up (connections, buffers, page cache)
  for (int r = 0; r < reps; ++r)
    for (auto& p : paths) {
      auto t0 = clock_type::now();
      for (int i = 0; i < p.iters; ++i)
        p.round_trip();
      double s = std::chrono::duration<double>(clock_type::now() - t0).count();
      p.best_gbps = std::max(p.best_gbps, static_cast<double>(size) * p.iters / s / 1e9);
    }
}

/// The run's first lines: the pattern, the machine, the table header.
void print_header(const transport_flags& f, unsigned cores, const std::string& load_before) {
  std::printf("troupe bench transport: 1 tensor in flight, send/ack over 127.0.0.1, best of %d "
              "interleaved rounds\n%u cores, load average %s, tcp congestion control %s\n",
              f.reps, cores, load_before.c_str(), congestion_control().c_str());
  std::printf("%10s %8s %10s %10s %10s %11s %8s\n", "size", "iters", "dataplane", "caf", "tcp",
              "tcp_reuse", "dp/tcp");
  std::printf("%10s %8s %10s %10s %10s %11s %8s\n", "", "", "GB/s", "GB/s", "GB/s", "GB/s", "");
}

/// Prints one size's row; returns it as JSON.
template <class Paths>
nlohmann::json report_row(std::size_t size, int iters, int caf_iters, const Paths& paths) {
  double dp_gbps = paths[0].best_gbps, caf_gbps = paths[1].best_gbps;
  double tcp_gbps = paths[2].best_gbps, reuse_gbps = paths[3].best_gbps;
  double ratio = tcp_gbps > 0 ? dp_gbps / tcp_gbps : 0;
  std::printf("%10s %8d %10.3f %10.3f %10.3f %11.3f %8.2f\n", human(size).c_str(), iters, dp_gbps,
              caf_gbps, tcp_gbps, reuse_gbps, ratio);
  std::fflush(stdout);
  return nlohmann::json({{"size_bytes", size},
                         {"dataplane_gbps", dp_gbps},
                         {"caf_gbps", caf_gbps},
                         {"tcp_gbps", tcp_gbps},
                         {"tcp_reuse_gbps", reuse_gbps},
                         {"dataplane_over_tcp", ratio},
                         {"iterations", iters},
                         {"caf_iterations", caf_iters}});
}

/// The data plane's sending side: one tensor in flight, its acknowledgement
/// (the receiver sends the id back) awaited.
struct dp_sender {
  std::mutex mtx;
  std::condition_variable cv;
  std::uint64_t acked = 0;
  std::uint64_t next_id = 0;
  tp::data_plane plane;

  dp_sender(const tp::cluster_key& key, std::uint16_t port) : plane{options(key), callbacks()} {
    plane.connect(receiver_name, "127.0.0.1", port);
  }

  static tp::data_plane_options options(const tp::cluster_key& key) {
    tp::data_plane_options o;
    o.name = sender_name;
    o.key = key;
    return o;
  }

  /// The ack arrives on the data plane's io thread.
  tp::data_plane_callbacks callbacks() {
    tp::data_plane_callbacks cb;
    cb.on_receive = [this](const std::string&, std::uint64_t id, rt::tensor) {
      {
        std::lock_guard<std::mutex> g{mtx};
        acked = id;
      }
      cv.notify_one(); // after unlocking: the woken sender must not block on mtx
    };
    return cb;
  }

  void round_trip(const rt::tensor& t) {
    auto id = ++next_id;
    plane.send(receiver_name, id, t);
    std::unique_lock<std::mutex> g{mtx};
    if (!cv.wait_for(g, ack_timeout, [&] { return acked == id; }))
      fail("no data-plane acknowledgement within " + std::to_string(ack_timeout.count()) + " s");
  }
};

int run_sender(const transport_flags& f) {
  rt::temp_dir keys{"troupe-bench-"}; // private: the cluster key
  auto key_file = keys.path() / "cluster.key";
  auto key = tp::generate_key();
  tp::save_key(key_file, key);
  receiver_ports ports;
  auto child = start_receiver(key_file, keys.path() / "receiver.log", ports);

  dp_sender dp{key, ports.dp};

  // CAF client.
  troupe::actors::system_config cfg{1};
  cfg.load<caf::io::middleman>();
  caf::actor_system sys{cfg};
  auto remote = sys.middleman().remote_actor("127.0.0.1", ports.caf);
  if (!remote)
    fail("CAF remote_actor: " + sys.render(remote.error()));
  caf::scoped_actor self{sys};

  // TCP client.
  int tfd = connect_tcp(ports.tcp);
  struct fd_closer {
    int fd;
    ~fd_closer() { ::close(fd); }
  } tcp_guard{tfd};

  auto load_before = load_average();
  const auto cores = std::thread::hardware_concurrency();
  print_header(f, cores, load_before);
  std::fflush(stdout);

  nlohmann::json rows = nlohmann::json::array();
  for (std::size_t size = f.min_size; size <= f.max_size; size *= 4) {
    auto t = rt::tensor::empty(rt::dtype::u8, {static_cast<std::int64_t>(size)});
    std::memset(t.mutable_raw_data(), 0x5a, size);
    int iters = static_cast<int>(std::clamp<std::size_t>((std::size_t{256} << 20) / size, 5, 2000));
    int caf_iters = std::max(5, iters / 4); // CAF is far slower on small messages

    std::array<bench_path, 4> paths{{
        {"dataplane", iters, [&] { dp.round_trip(t); }},
        {"caf", caf_iters,
         [&] {
           self->request(*remote, ack_timeout, t)
               .receive([](std::uint64_t) {},
                        [&](caf::error& e) { fail("CAF request: " + sys.render(e)); });
         }},
        {"tcp", iters, [&] { tcp_round_trip(tfd, t, false); }},
        {"tcp_reuse", iters, [&] { tcp_round_trip(tfd, t, true); }},
    }};
    time_paths(paths, f.reps, size);
    rows.push_back(report_row(size, iters, caf_iters, paths));
  }
  auto load_after = load_average();
  const auto wake = rt::measure_wake_latency();
  std::printf("%s: the data plane's round trip has one more than TCP's (its io thread wakes "
              "the waiting sender)\n",
              rt::to_text(wake).c_str());
  std::printf("load average after: %s%s\n", load_after.c_str(), busy_note(load_after, cores));

  ::close(std::exchange(tcp_guard.fd, -1));
  dp.plane.stop();
  child->finish();
  if (!f.json.empty()) {
    nlohmann::json doc{{"benchmark", "transport"},
                       {"pattern", "send/ack, one tensor in flight, 127.0.0.1, best of reps"},
                       {"reps", f.reps},
                       {"max_size_bytes", f.max_size},
                       {"tcp_receive", "fresh runtime::storage per message"},
                       {"cores", cores},
                       {"load_average_before", load_before},
                       {"load_average_after", load_after},
                       {"tcp_congestion_control", congestion_control()},
                       {"wake_latency", rt::to_json(wake)},
                       {"rows", rows}};
    write_json_file(f.json, doc);
    std::printf("wrote %s\n", f.json.c_str());
  }
  std::fflush(nullptr);
  return exit_ok;
}

} // namespace

command_action add_bench_transport_command(CLI::App& bench) {
  auto* cmd = bench.add_subcommand(
      "transport", "tensor GB/s between two processes on 127.0.0.1: data plane, CAF, plain TCP");
  auto f = std::make_shared<transport_flags>();
  cmd->add_option("--json", f->json, "also write the rows as JSON to FILE");
  cmd->add_option("--reps", f->reps, "timed rounds per path and size (best is reported)")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  const auto largest = static_cast<std::size_t>(rt::default_max_tensor_bytes);
  cmd->add_option("--max-size", f->max_size, "largest tensor in bytes")
      ->check(CLI::Range(smallest_size, largest))
      ->capture_default_str();
  cmd->add_option("--min-size", f->min_size, "smallest tensor in bytes (sizes min-size x 4^k)")
      ->check(CLI::Range(smallest_size, largest))
      ->capture_default_str();

  auto* peer = bench.add_subcommand("transport-peer", "the receiver of `bench transport`");
  peer->group(""); // hidden: only `bench transport` starts it
  auto key_file = std::make_shared<std::string>();
  peer->add_option("--key-file", *key_file, "cluster key file")->required();

  return [cmd, f, peer, key_file] {
    if (cmd->parsed()) {
      if (f->min_size > f->max_size)
        throw rt::input_error("--min-size " + std::to_string(f->min_size) +
                              " is larger than --max-size " + std::to_string(f->max_size));
      return run_sender(*f);
    }
    if (peer->parsed())
      return run_receiver(*key_file);
    return exit_bad_input;
  };
}

} // namespace troupe::apps
