// Transport benchmark: a tensor of 4 KiB .. 64 MiB sent from this process to a
// receiver process (this program re-executed with --receiver) over 127.0.0.1,
// which acknowledges each one with a small message; the sender waits for the
// acknowledgement before sending the next (send/ack, one in flight). Three
// paths in the same run:
//   dataplane: runtime::transport::data_plane, HMAC-authenticated connection,
//              scatter/gather write from the tensor's storage, received into
//              a fresh storage per tensor;
//   caf:       caf::io::middleman remote_actor/publish, the tensor inside a CAF
//              message (bulk apply_raw serialisation), the reply is the ack;
//   tcp:       a plain blocking socket, 8-byte length + bytes, 1-byte ack,
//              received into a fresh buffer per message (what a receiver that
//              hands the bytes on must do), and tcp_reuse: the same into one
//              reused buffer (an upper bound no tensor transport reaches).
// GB/s = payload bytes / 1e9 / seconds per round trip; best of --reps rounds.
//
//   troupe_bench_transport [--json FILE] [--reps N] [--max-size BYTES]

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <nlohmann/json.hpp>

#include "runtime/system_config.hpp"
#include "runtime/tensor.hpp"
#include "runtime/tensor_inspect.hpp"
#include "runtime/transport/data_plane.hpp"

extern char** environ;

namespace rt = troupe::runtime;
namespace tp = troupe::runtime::transport;
using clock_type = std::chrono::steady_clock;

namespace {

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "troupe_bench_transport: %s\n", what.c_str());
  std::exit(1);
}

bool send_all(int fd, const void* p, std::size_t n) {
  const auto* b = static_cast<const char*>(p);
  while (n > 0) {
    auto k = ::send(fd, b, n, MSG_NOSIGNAL);
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

// ---------------------------------------------------------------- receiver

/// TCP baseline server: for each message, an 8-byte header (length, top bit =
/// reuse one buffer), the bytes, then a 1-byte ack.
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
    bool reuse = (hdr >> 63) != 0;
    auto n = static_cast<std::size_t>(hdr & ~(std::uint64_t{1} << 63));
    if (n > (std::size_t{1} << 31))
      break;
    if (reuse) {
      if (reused.size() < n)
        reused.resize(n);
      if (!recv_all(fd, reused.data(), n))
        break;
    } else {
      std::unique_ptr<std::byte[]> fresh{new std::byte[n]}; // uninitialised, like a storage
      if (!recv_all(fd, fresh.get(), n))
        break;
    }
    char ack = 1;
    if (!send_all(fd, &ack, 1))
      break;
  }
  ::close(fd);
}

int listen_loopback(std::uint16_t& port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd, 4) != 0)
    die("tcp listen failed");
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  port = ntohs(a.sin_port);
  return fd;
}

int run_receiver(const std::string& key_file) {
  // Data plane: acknowledge every tensor with a 1-element tensor, same id.
  std::atomic<tp::data_plane*> self{nullptr};
  auto ack = rt::tensor::zeros(rt::dtype::u8, {1});
  tp::data_plane_callbacks cb;
  cb.on_receive = [&](const std::string& peer, std::uint64_t id, rt::tensor) {
    self.load()->send(peer, id, ack);
  };
  tp::data_plane_options o;
  o.name = "bench-receiver";
  o.key = tp::load_key(key_file);
  tp::data_plane dp{o, cb};
  self = &dp;
  auto dp_port = dp.listen("127.0.0.1", 0);

  // CAF: a published actor that answers with the byte count.
  rt::system_config cfg{1};
  cfg.load<caf::io::middleman>();
  caf::actor_system sys{cfg};
  auto receiver = sys.spawn([]() -> caf::behavior {
    return {[](const rt::tensor& t) -> std::uint64_t { return t.nbytes(); }};
  });
  auto caf_port = sys.middleman().publish(receiver, 0, "127.0.0.1");
  if (!caf_port)
    die("CAF publish failed: " + sys.render(caf_port.error()));

  std::uint16_t tcp_port = 0;
  int lfd = listen_loopback(tcp_port);
  std::thread tcp{[lfd] { tcp_serve(lfd); }};

  std::printf("PORTS %u %u %u\n", dp_port, *caf_port, tcp_port);
  std::fflush(stdout);
  // Live until the parent closes our stdin.
  char c;
  while (::read(0, &c, 1) > 0) {
  }
  dp.stop();
  std::fflush(nullptr);
  std::_Exit(0); // no orderly CAF teardown needed for a benchmark peer
}

// ------------------------------------------------------------------ sender

struct receiver_process {
  pid_t pid = -1;
  int to_child = -1;
  std::uint16_t dp_port = 0, caf_port = 0, tcp_port = 0;

  receiver_process(const std::string& key_file) {
    int in[2], out[2];
    if (::pipe(in) != 0 || ::pipe(out) != 0)
      die("pipe failed");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_addclose(&fa, in[1]);
    posix_spawn_file_actions_addclose(&fa, out[0]);
    std::string exe = std::filesystem::read_symlink("/proc/self/exe").string();
    std::vector<std::string> args{exe, "--receiver", "--key-file", key_file};
    std::vector<char*> argv;
    for (auto& a : args)
      argv.push_back(a.data());
    argv.push_back(nullptr);
    if (posix_spawn(&pid, exe.c_str(), &fa, nullptr, argv.data(), environ) != 0)
      die("cannot start the receiver process");
    posix_spawn_file_actions_destroy(&fa);
    ::close(in[0]);
    ::close(out[1]);
    to_child = in[1];
    std::string line;
    char c;
    while (::read(out[0], &c, 1) == 1 && c != '\n')
      line.push_back(c);
    ::close(out[0]);
    unsigned a = 0, b = 0, d = 0;
    if (std::sscanf(line.c_str(), "PORTS %u %u %u", &a, &b, &d) != 3)
      die("receiver did not report its ports (got '" + line + "')");
    dp_port = static_cast<std::uint16_t>(a);
    caf_port = static_cast<std::uint16_t>(b);
    tcp_port = static_cast<std::uint16_t>(d);
  }
  /// Closes the receiver's stdin (its signal to exit) and reaps it.
  void finish() {
    if (pid < 0)
      return;
    ::close(to_child);
    int status = 0;
    ::waitpid(pid, &status, 0);
    pid = -1;
  }
  ~receiver_process() { finish(); }
};

/// Runs `one_round_trip` `iters` times per round, `reps` rounds; returns the
/// best GB/s.
template <class F>
double measure(std::size_t bytes, int iters, int reps, F&& one_round_trip) {
  for (int i = 0; i < std::min(iters, 3); ++i)
    one_round_trip(); // warm up (connections, page cache of buffers)
  double best = 0;
  for (int r = 0; r < reps; ++r) {
    auto t0 = clock_type::now();
    for (int i = 0; i < iters; ++i)
      one_round_trip();
    double s = std::chrono::duration<double>(clock_type::now() - t0).count();
    best = std::max(best, static_cast<double>(bytes) * iters / s / 1e9);
  }
  return best;
}

std::string human(std::size_t b) {
  if (b >= (1u << 20))
    return std::to_string(b >> 20) + " MiB";
  return std::to_string(b >> 10) + " KiB";
}

int run_sender(const std::string& json_file, int reps, std::size_t max_size) {
  auto key = tp::generate_key();
  auto key_file = std::filesystem::temp_directory_path() /
                  ("troupe-bench-key-" + std::to_string(::getpid()));
  tp::save_key(key_file, key);
  receiver_process child{key_file.string()};

  // Data plane client.
  std::mutex mtx;
  std::condition_variable cv;
  std::uint64_t acked = 0;
  tp::data_plane_callbacks cb;
  cb.on_receive = [&](const std::string&, std::uint64_t id, rt::tensor) {
    std::lock_guard<std::mutex> g{mtx};
    acked = id;
    cv.notify_one();
  };
  tp::data_plane_options o;
  o.name = "bench-sender";
  o.key = key;
  tp::data_plane dp{o, cb};
  dp.connect("bench-receiver", "127.0.0.1", child.dp_port);
  std::filesystem::remove(key_file);

  // CAF client.
  rt::system_config cfg{1};
  cfg.load<caf::io::middleman>();
  caf::actor_system sys{cfg};
  auto remote = sys.middleman().remote_actor("127.0.0.1", child.caf_port);
  if (!remote)
    die("CAF remote_actor failed: " + sys.render(remote.error()));
  caf::scoped_actor self{sys};

  // TCP client.
  int tfd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(child.tcp_port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(tfd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
    die("tcp connect failed");
  no_delay(tfd);

  std::printf("transport benchmark: 1 tensor in flight, send/ack over 127.0.0.1, best of %d\n",
              reps);
  std::printf("%10s %8s %10s %10s %10s %11s %8s %10s\n", "size", "iters", "dataplane", "caf",
              "tcp", "tcp_reuse", "dp/tcp", "dp/reuse");
  nlohmann::json rows = nlohmann::json::array();
  std::uint64_t next_id = 0;
  for (std::size_t size = 4096; size <= max_size; size *= 4) {
    auto t = rt::tensor::empty(rt::dtype::u8, {static_cast<std::int64_t>(size)});
    std::memset(t.mutable_raw_data(), 0x5a, size);
    int iters = static_cast<int>(std::clamp<std::size_t>((256u << 20) / size, 5, 2000));
    int caf_iters = std::max(5, iters / 4); // CAF is far slower on small messages

    double dp_gbps = measure(size, iters, reps, [&] {
      auto id = ++next_id;
      dp.send("bench-receiver", id, t);
      std::unique_lock<std::mutex> g{mtx};
      cv.wait(g, [&] { return acked == id; });
    });
    double caf_gbps = measure(size, caf_iters, reps, [&] {
      self->request(*remote, caf::infinite, t)
        .receive([](std::uint64_t) {},
                 [&](caf::error& e) { die("CAF request failed: " + sys.render(e)); });
    });
    auto tcp_round = [&](bool reuse) {
      std::uint64_t hdr = size | (reuse ? std::uint64_t{1} << 63 : 0);
      iovec iov[2] = {{&hdr, sizeof hdr}, {const_cast<void*>(t.raw_data()), size}};
      msghdr m{};
      m.msg_iov = iov;
      m.msg_iovlen = 2;
      std::size_t left = sizeof hdr + size;
      while (left > 0) {
        auto k = ::sendmsg(tfd, &m, MSG_NOSIGNAL);
        if (k <= 0)
          die("tcp send failed");
        left -= static_cast<std::size_t>(k);
        // advance the iovecs
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
        die("tcp ack failed");
    };
    double tcp_gbps = measure(size, iters, reps, [&] { tcp_round(false); });
    double reuse_gbps = measure(size, iters, reps, [&] { tcp_round(true); });
    double ratio = tcp_gbps > 0 ? dp_gbps / tcp_gbps : 0;
    double ratio_reuse = reuse_gbps > 0 ? dp_gbps / reuse_gbps : 0;
    std::printf("%10s %8d %10.3f %10.3f %10.3f %11.3f %8.2f %10.2f\n", human(size).c_str(), iters,
                dp_gbps, caf_gbps, tcp_gbps, reuse_gbps, ratio, ratio_reuse);
    std::fflush(stdout);
    rows.push_back({{"size_bytes", size},
                    {"dataplane_gbps", dp_gbps},
                    {"caf_gbps", caf_gbps},
                    {"tcp_gbps", tcp_gbps},
                    {"tcp_reuse_gbps", reuse_gbps},
                    {"ratio", ratio},
                    {"ratio_vs_reuse", ratio_reuse},
                    {"iterations", iters},
                    {"caf_iterations", caf_iters}});
  }
  ::close(tfd);
  dp.stop();
  if (!json_file.empty()) {
    nlohmann::json doc{{"benchmark", "transport"},
                       {"pattern", "send/ack, one in flight, 127.0.0.1, best of reps"},
                       {"reps", reps},
                       {"rows", rows}};
    std::ofstream f{json_file};
    f << doc.dump(2) << "\n";
    if (!f)
      die("cannot write " + json_file);
    std::printf("wrote %s\n", json_file.c_str());
  }
  child.finish();
  std::fflush(nullptr);
  std::_Exit(0); // skip CAF's teardown of the remote proxy: nothing left to flush
}

} // namespace

int main(int argc, char** argv) {
  std::string json_file, key_file;
  bool receiver = false;
  int reps = 3;
  std::size_t max_size = 64u << 20;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc)
        die(a + " needs a value");
      return argv[++i];
    };
    if (a == "--json")
      json_file = value();
    else if (a == "--reps")
      reps = std::max(1, std::atoi(value().c_str()));
    else if (a == "--max-size")
      max_size = std::strtoull(value().c_str(), nullptr, 10);
    else if (a == "--receiver")
      receiver = true;
    else if (a == "--key-file")
      key_file = value();
    else if (a == "-h" || a == "--help") {
      std::puts("usage: troupe_bench_transport [--json FILE] [--reps N] [--max-size BYTES]");
      return 0;
    } else
      die("unknown argument " + a);
  }
  if (receiver)
    return run_receiver(key_file);
  return run_sender(json_file, reps, max_size);
}
