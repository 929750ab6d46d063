#define BOOST_TEST_DYN_LINK
#define BOOST_TEST_MODULE transport_data_plane
#include <boost/test/unit_test.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <fstream>
#include <future>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "runtime/error.hpp"
#include "runtime/net/transport/data_plane.hpp"
#include "runtime/net/transport/frame.hpp"
#include "../loopback.hpp"

using namespace troupe::runtime;
using namespace troupe::runtime::transport;
using namespace std::chrono_literals;

namespace {

/// What a data plane's callbacks saw.
struct inbox {
  std::mutex mtx;
  std::condition_variable cv;
  std::vector<std::pair<std::uint64_t, tensor>> received;
  std::vector<std::string> from;
  std::vector<std::string> down;
  std::function<void()> on_first; // runs (on the io thread) before the first is stored

  data_plane_callbacks callbacks() {
    data_plane_callbacks cb;
    cb.on_receive = [this](const std::string& peer, std::uint64_t id, tensor t) {
      if (on_first)
        std::exchange(on_first, nullptr)();
      std::lock_guard<std::mutex> g{mtx};
      received.emplace_back(id, std::move(t));
      from.push_back(peer);
      cv.notify_all();
    };
    cb.on_peer_down = [this](const std::string& peer, const std::string&, bool) {
      std::lock_guard<std::mutex> g{mtx};
      down.push_back(peer);
      cv.notify_all();
    };
    return cb;
  }
  bool wait_received(std::size_t n, std::chrono::milliseconds limit = 10s) {
    std::unique_lock<std::mutex> g{mtx};
    return cv.wait_for(g, limit, [&] { return received.size() >= n; });
  }
  bool wait_down(std::chrono::milliseconds limit = 5s) {
    std::unique_lock<std::mutex> g{mtx};
    return cv.wait_for(g, limit, [&] { return !down.empty(); });
  }
};

data_plane_options options(std::string name, const cluster_key& key) {
  data_plane_options o;
  o.name = std::move(name);
  o.key = key;
  return o;
}

tensor random_u8(std::size_t n, std::uint32_t seed) {
  auto t = tensor::empty(dtype::u8, {static_cast<std::int64_t>(n)});
  std::mt19937 gen{seed};
  auto* p = t.mutable_data<std::uint8_t>();
  for (std::size_t i = 0; i < n; ++i)
    p[i] = static_cast<std::uint8_t>(gen());
  return t;
}

std::size_t rss_bytes() {
  std::ifstream f{"/proc/self/statm"};
  std::size_t pages = 0, resident = 0;
  f >> pages >> resident;
  return resident * static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
}

/// A raw POSIX TCP client: sends whatever the test wants and waits for the
/// server to answer or hang up.
class raw_client {
public:
  explicit raw_client(std::uint16_t port) {
    fd_ = troupe::test::loopback_connect(port);
  }
  ~raw_client() { ::close(fd_); }

  bool send(const void* p, std::size_t n) {
    const auto* b = static_cast<const char*>(p);
    while (n > 0) {
      auto k = ::send(fd_, b, n, MSG_NOSIGNAL);
      if (k <= 0)
        return false;
      b += k;
      n -= static_cast<std::size_t>(k);
    }
    return true;
  }
  template <class C>
  bool send(const C& c) {
    return send(c.data(), c.size());
  }
  /// Reads exactly n bytes; false on EOF, error or timeout.
  bool recv(void* p, std::size_t n, std::chrono::milliseconds limit = 3s) {
    auto* b = static_cast<char*>(p);
    while (n > 0) {
      pollfd pfd{fd_, POLLIN, 0};
      if (::poll(&pfd, 1, static_cast<int>(limit.count())) <= 0)
        return false;
      auto k = ::recv(fd_, b, n, 0);
      if (k <= 0)
        return false;
      b += k;
      n -= static_cast<std::size_t>(k);
    }
    return true;
  }
  /// True when the server closes the connection within `limit` (reading and
  /// discarding anything it sends first).
  bool closed_by_server(std::chrono::milliseconds limit = 3s) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    char buf[512];
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0)
        return false;
      pollfd pfd{fd_, POLLIN, 0};
      if (::poll(&pfd, 1, static_cast<int>(left.count())) <= 0)
        return false;
      auto k = ::recv(fd_, buf, sizeof buf, 0);
      if (k <= 0)
        return true;
    }
  }
  /// Completes an authenticated handshake as `name`.
  bool authenticate(const cluster_key& key, const std::string& name, const std::string& server) {
    auto hs = handshake::client(key, name, server, auth_mode::hmac);
    auto msg = hs.start();
    while (msg) {
      if (!send(*msg))
        return false;
      if (hs.status() != handshake::state::in_progress)
        break;
      handshake_bytes in{};
      if (!recv(in.data(), in.size()))
        return false;
      msg = hs.on_message(in);
      if (hs.status() == handshake::state::done)
        break;
    }
    return hs.status() == handshake::state::done;
  }

private:
  int fd_ = -1;
};

} // namespace

BOOST_AUTO_TEST_CASE(tensors_from_1_byte_to_8_mib_arrive_bitwise_equal) {
  auto key = generate_key();
  inbox ia, ib;
  data_plane a{options("A", key), ia.callbacks()};
  data_plane b{options("B", key), ib.callbacks()};
  auto port = b.listen("127.0.0.1", 0);
  BOOST_TEST(port != 0);
  a.connect("B", "127.0.0.1", port);
  a.connect("B", "127.0.0.1", port); // already connected: returns at once

  std::vector<tensor> sent;
  for (std::size_t n : {1u, 3u, 1000u, 65537u, 1u << 20, 8u << 20})
    sent.push_back(random_u8(n, static_cast<std::uint32_t>(n)));
  sent.push_back(tensor::from_vector<float>({2, 3}, {1, 2, 3, 4, 5, 6.5f}));
  sent.push_back(tensor::from_vector<double>({}, {3.25}));
  sent.push_back(tensor::from_vector<std::int64_t>({2, 1}, {-1, 1LL << 40}));
  sent.push_back(tensor::empty(dtype::i32, {0, 5}));
  // A view travels as its range only (the wire count below) and arrives compact.
  const auto view_at = sent.size();
  sent.push_back(random_u8(3u << 20, 11).view(1000, {2, 35000}));
  std::atomic<int> ok{0};
  std::uint64_t wire = 0;
  for (std::size_t i = 0; i < sent.size(); ++i) {
    wire += frame_header_size + sent[i].nbytes();
    a.send("B", 100 + i, sent[i], [&](std::optional<std::string> e) {
      if (!e)
        ++ok;
    });
  }
  BOOST_REQUIRE(ib.wait_received(sent.size()));
  for (std::size_t i = 0; i < sent.size(); ++i) {
    BOOST_TEST(ib.received[i].first == 100 + i);
    BOOST_TEST(ib.from[i] == "A");
    BOOST_TEST(bitwise_equal(ib.received[i].second, sent[i]));
    BOOST_TEST(ib.received[i].second.is_unique()); // a fresh storage of its own
  }
  BOOST_TEST(ib.received[view_at].second.storage_nbytes() == 70000u);
  // The same connection carries the other direction.
  std::promise<std::optional<std::string>> back;
  b.send("A", 7, sent[2], [&](std::optional<std::string> e) { back.set_value(e); });
  BOOST_TEST(!back.get_future().get()); // counted once the write completed
  BOOST_REQUIRE(ia.wait_received(1));
  BOOST_TEST(bitwise_equal(ia.received[0].second, sent[2]));
  BOOST_TEST(b.stats().connections_accepted == 1u);

  for (int i = 0; i < 100 && ok.load() < static_cast<int>(sent.size()); ++i)
    std::this_thread::sleep_for(10ms);
  BOOST_TEST(ok.load() == static_cast<int>(sent.size()));
  auto ca = *a.counters("B");
  auto cb = *b.counters("A");
  BOOST_TEST(ca.frames_sent == sent.size());
  BOOST_TEST(cb.frames_received == sent.size());
  BOOST_TEST(ca.bytes_sent == wire);
  BOOST_TEST(cb.bytes_received == wire);
  BOOST_TEST(cb.frames_sent == 1u);
  BOOST_TEST(ca.frames_received == 1u);
  BOOST_TEST(a.peers() == std::vector<std::string>{"B"});
  BOOST_TEST(b.peers() == std::vector<std::string>{"A"});
  BOOST_TEST(b.stats().frames_rejected == 0u);
}

BOOST_AUTO_TEST_CASE(many_sends_in_flight_from_several_threads) {
  auto key = generate_key();
  inbox ib;
  data_plane a{options("A", key), {}};
  data_plane b{options("B", key), ib.callbacks()};
  a.connect("B", "127.0.0.1", b.listen("127.0.0.1"));
  constexpr int threads = 3, per_thread = 300;
  std::atomic<int> done{0};
  std::vector<std::thread> senders;
  for (int t = 0; t < threads; ++t)
    senders.emplace_back([&, t] {
      for (int i = 0; i < per_thread; ++i) {
        auto v = tensor::from_vector<std::int64_t>({2}, {t, i});
        a.send("B", static_cast<std::uint64_t>(t) << 32 | static_cast<std::uint64_t>(i),
               std::move(v), [&](std::optional<std::string> e) {
                 if (!e)
                   ++done;
               });
      }
    });
  for (auto& s : senders)
    s.join();
  BOOST_REQUIRE(ib.wait_received(threads * per_thread));
  std::vector<int> next(threads, 0);
  for (auto& [id, t] : ib.received) {
    auto v = t.values<std::int64_t>();
    BOOST_REQUIRE(v[0] >= 0 && v[0] < threads);
    // Frames of one sender thread arrive in the order they were sent.
    BOOST_TEST(v[1] == next[static_cast<std::size_t>(v[0])]++);
    BOOST_TEST(id == (static_cast<std::uint64_t>(v[0]) << 32 | static_cast<std::uint64_t>(v[1])));
  }
  for (int i = 0; i < 100 && done.load() < threads * per_thread; ++i)
    std::this_thread::sleep_for(10ms);
  BOOST_TEST(done.load() == threads * per_thread);
  BOOST_TEST(a.counters("B")->frames_sent == static_cast<std::uint64_t>(threads * per_thread));
}

/// send_all() queues its frames together: from several threads at once,
/// the frames of one call arrive adjacent and in order (what lets the courier
/// write a descriptor and its payload in one sendmsg), and the wire counters
/// count each frame.
BOOST_AUTO_TEST_CASE(frames_of_one_send_all_arrive_together) {
  auto key = generate_key();
  inbox ib;
  data_plane a{options("A", key), {}};
  data_plane b{options("B", key), ib.callbacks()};
  a.connect("B", "127.0.0.1", b.listen("127.0.0.1"));
  constexpr int threads = 8, per_thread = 500;
  std::atomic<bool> go{false}; // all threads send at once, so their calls overlap
  std::vector<std::thread> senders;
  for (int t = 0; t < threads; ++t)
    senders.emplace_back([&, t] {
      // Built first, so that the calls below follow each other closely.
      std::vector<std::vector<data_plane::frame_to_send>> calls(per_thread);
      for (int i = 0; i < per_thread; ++i) {
        const std::int64_t n[] = {2, 3, 8193}; // 16 B .. 64 KiB + 8, every element the tag
        const std::int64_t tag = t * 100000 + i;
        for (std::int64_t j = 0; j < 3; ++j)
          calls[static_cast<std::size_t>(i)].push_back(
              {static_cast<std::uint64_t>(j),
               tensor::from_vector<std::int64_t>(
                   {n[j]}, std::vector<std::int64_t>(static_cast<std::size_t>(n[j]), tag))});
      }
      while (!go.load())
        std::this_thread::yield();
      for (auto& frames : calls)
        a.send_all("B", std::move(frames));
    });
  go = true;
  for (auto& s : senders)
    s.join();
  a.send_all("nobody", {{1, tensor::empty(dtype::u8, {1})}}); // unknown peer: dropped
  BOOST_REQUIRE(ib.wait_received(3 * threads * per_thread));
  std::vector<int> next(threads, 0);
  for (std::size_t k = 0; k < ib.received.size(); k += 3) {
    auto tag = ib.received[k].second.values<std::int64_t>()[0];
    auto t = static_cast<std::size_t>(tag / 100000);
    BOOST_REQUIRE(t < static_cast<std::size_t>(threads));
    BOOST_TEST(tag % 100000 == next[t]++); // one thread's calls in order
    for (std::size_t j = 0; j < 3; ++j) {
      BOOST_TEST(ib.received[k + j].first == j); // the call's frames adjacent
      BOOST_TEST(ib.received[k + j].second.values<std::int64_t>().back() == tag);
    }
  }
  BOOST_TEST(a.counters("B")->frames_sent == static_cast<std::uint64_t>(3 * threads * per_thread));
  a.stop();
  a.send_all("B", {{1, tensor::empty(dtype::u8, {1})}}); // after stop: nothing, no throw
}

BOOST_AUTO_TEST_CASE(peer_closing_mid_transfer_fails_pending_sends) {
  auto key = generate_key();
  inbox ia, ib;
  std::mutex gate_mtx;
  std::condition_variable gate_cv;
  bool entered = false, released = false;
  ib.on_first = [&] {
    std::unique_lock<std::mutex> g{gate_mtx};
    entered = true;
    gate_cv.notify_all();
    gate_cv.wait(g, [&] { return released; });
  };
  data_plane a{options("A", key), ia.callbacks()};
  auto b = std::make_unique<data_plane>(options("B", key), ib.callbacks());
  a.connect("B", "127.0.0.1", b->listen("127.0.0.1"));
  constexpr int n = 16;
  auto big = random_u8(8u << 20, 1);
  std::mutex mtx;
  std::condition_variable cv;
  int completed = 0, failed = 0;
  for (int i = 0; i < n; ++i)
    a.send("B", static_cast<std::uint64_t>(i), big, [&](std::optional<std::string> e) {
      std::lock_guard<std::mutex> g{mtx};
      ++completed;
      if (e)
        ++failed;
      cv.notify_all();
    });
  {
    std::unique_lock<std::mutex> g{gate_mtx};
    BOOST_REQUIRE(gate_cv.wait_for(g, 10s, [&] { return entered; }));
    released = true;
    gate_cv.notify_all();
  }
  b->stop(); // closes with unread data: the sender sees a reset
  {
    std::unique_lock<std::mutex> g{mtx};
    BOOST_REQUIRE(cv.wait_for(g, 10s, [&] { return completed == n; }));
  }
  BOOST_TEST(failed >= 1);
  BOOST_REQUIRE(ia.wait_down());
  BOOST_TEST(ia.down.at(0) == "B");
  BOOST_TEST(a.peers().empty());
  // Sends after the peer died fail at once.
  std::promise<std::optional<std::string>> p;
  a.send("B", 99, big, [&](std::optional<std::string> e) { p.set_value(e); });
  auto e = p.get_future().get();
  BOOST_REQUIRE(e);
  BOOST_TEST(e->find("not connected") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(wrong_key_and_bad_endpoints_are_refused) {
  inbox ib;
  data_plane b{options("B", generate_key()), ib.callbacks()};
  auto port = b.listen("127.0.0.1");
  data_plane a{options("A", generate_key()), {}};
  BOOST_CHECK_THROW(a.connect("B", "127.0.0.1", port), input_error);
  BOOST_TEST(a.peers().empty());
  BOOST_TEST(b.peers().empty());
  // Wrong expected name.
  data_plane c{options("C", generate_key()), {}};
  BOOST_CHECK_THROW(c.connect("Z", "127.0.0.1", port), input_error);
  // Nobody listening.
  data_plane d{options("D", generate_key()), {}};
  auto closed_port = d.listen("127.0.0.1");
  d.stop();
  d.stop(); // idempotent
  std::optional<std::string> after_stop;
  d.send("A", 1, tensor::zeros(dtype::f32, {1}),
         [&](std::optional<std::string> e) { after_stop = e; }); // fails at once
  BOOST_TEST(after_stop.has_value());
  BOOST_CHECK_THROW(a.connect("D", "127.0.0.1", closed_port), input_error);
  BOOST_CHECK_THROW(b.listen("no-such-host.invalid"), input_error);
  // Unknown peer.
  std::promise<std::optional<std::string>> p;
  a.send("nobody", 1, tensor::zeros(dtype::f32, {1}),
         [&](std::optional<std::string> e) { p.set_value(e); });
  BOOST_TEST(p.get_future().get().has_value());
  BOOST_CHECK_THROW(a.send("B", 1, tensor{}), std::invalid_argument);
  BOOST_CHECK_THROW((data_plane{options("bad name", generate_key()), {}}), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(plain_mode_only_when_asked_and_only_on_loopback) {
  auto plain = [](std::string name) {
    data_plane_options o;
    o.name = std::move(name);
    o.insecure_plain_loopback = true;
    return o;
  };
  inbox ib;
  data_plane b{plain("B"), ib.callbacks()};
  BOOST_CHECK_THROW(b.listen("0.0.0.0"), input_error);
  auto port = b.listen("127.0.0.1");
  data_plane a{plain("A"), {}};
  a.connect("B", "127.0.0.1", port);
  a.send("B", 1, tensor::from_vector<float>({1}, {2}));
  BOOST_REQUIRE(ib.wait_received(1));
  // Non-loopback peers are refused before any byte is sent.
  try {
    a.connect("X", "192.0.2.1", 9);
    BOOST_FAIL("plain mode connected to a non-loopback address");
  } catch (const input_error& e) {
    BOOST_TEST(std::string{e.what()}.find("loopback") != std::string::npos);
  }
  // An authenticated node and a plain node do not talk.
  data_plane h{options("H", generate_key()), {}};
  BOOST_CHECK_THROW(h.connect("B", "127.0.0.1", port), input_error);
  auto hport = h.listen("127.0.0.1");
  data_plane a2{plain("A2"), {}};
  BOOST_CHECK_THROW(a2.connect("H", "127.0.0.1", hport), input_error);
}

BOOST_AUTO_TEST_CASE(hostile_bytes_before_authentication_are_rejected) {
  auto key = generate_key();
  inbox ib;
  auto o = options("B", key);
  o.max_payload_bytes = 64u << 20;
  o.handshake_timeout = 300ms; // the 104-byte frame below is shorter than a HELLO
  data_plane b{o, ib.callbacks()};
  auto port = b.listen("127.0.0.1");
  auto rss_before = rss_bytes();

  std::vector<std::vector<std::byte>> attacks;
  std::mt19937 gen{42};
  std::vector<std::byte> garbage(4096);
  for (auto& x : garbage)
    x = static_cast<std::byte>(gen());
  attacks.push_back(garbage);
  // A well-formed data frame claiming 1 GiB, without any handshake.
  frame_header fh;
  fh.tensor.type = dtype::u8;
  fh.tensor.shape = {1 << 30};
  fh.tensor.payload_bytes = 1u << 30;
  auto hdr = encode_frame_header(fh);
  attacks.emplace_back(hdr.begin(), hdr.end());
  // A HELLO of a future version, and one with an oversized name length.
  handshake_message hello;
  hello.name = "mallory";
  auto hb = encode_handshake_message(hello);
  hb[4] = std::byte{2};
  attacks.emplace_back(hb.begin(), hb.end());
  hb = encode_handshake_message(hello);
  hb[9] = std::byte{255};
  attacks.emplace_back(hb.begin(), hb.end());
  for (const auto& bytes : attacks) {
    raw_client c{port};
    c.send(bytes);
    BOOST_TEST(c.closed_by_server());
  }
  { // Truncated handshake message, then hang up.
    raw_client c{port};
    c.send(std::span{hb}.first(10));
  }
  { // Replay of a recorded client handshake into a new session.
    raw_client rec{port};
    auto hs = handshake::client(key, "mallory", "B", auth_mode::hmac);
    auto m1 = *hs.start();
    rec.send(m1);
    handshake_bytes challenge{};
    BOOST_REQUIRE(rec.recv(challenge.data(), challenge.size()));
    auto m2 = *hs.on_message(challenge);
    rec.send(m2);
    handshake_bytes accept{};
    BOOST_REQUIRE(rec.recv(accept.data(), accept.size()));
    raw_client replay{port};
    replay.send(m1);
    handshake_bytes fresh{};
    BOOST_REQUIRE(replay.recv(fresh.data(), fresh.size()));
    replay.send(m2);
    handshake_bytes verdict{};
    BOOST_REQUIRE(replay.recv(verdict.data(), verdict.size()));
    BOOST_TEST((decode_handshake_message(verdict).reason == reject_reason::bad_mac));
    BOOST_TEST(replay.closed_by_server());
  }
  // The short frame header waits for the rest of a HELLO and times out; every
  // other attempt fails its handshake at once.
  BOOST_TEST(b.stats().handshake_timeouts == 1u);
  BOOST_TEST(b.stats().handshakes_failed == attacks.size()); // 3 bad HELLOs + the replay
  BOOST_TEST(b.stats().payload_bytes_allocated == 0u);
  BOOST_TEST(ib.received.empty());
  BOOST_TEST(rss_bytes() < rss_before + (32u << 20));
  // The node still serves honest peers.
  data_plane a{options("A", key), {}};
  a.connect("B", "127.0.0.1", port);
  a.send("B", 1, tensor::from_vector<float>({1}, {1}));
  BOOST_TEST(ib.wait_received(1));
}

BOOST_AUTO_TEST_CASE(bad_frames_after_authentication_are_rejected_before_allocation) {
  auto key = generate_key();
  inbox ib;
  auto o = options("B", key);
  o.max_payload_bytes = 64u << 20;
  data_plane b{o, ib.callbacks()};
  auto port = b.listen("127.0.0.1");
  auto rss_before = rss_bytes();
  auto good = encode_frame_header(tensor_frame_header(1, tensor::zeros(dtype::u8, {16})));
  auto with = [&](std::size_t off, std::uint64_t v, std::size_t n) {
    auto h = good;
    std::memcpy(h.data() + off, &v, n);
    return h;
  };
  std::vector<encoded_frame_header> bad_headers = {
    with(0, 0x12345678, 4),       // magic
    with(4, 9, 2),                // version
    with(6, 42, 1),               // kind
    with(96, 1ull << 40, 8),      // payload far above the cap (shape disagrees too)
    with(96, ~0ull, 8),           // max u64 length
  };
  { // shape and length agree on 1 GiB: above the 64 MiB cap
    frame_header fh;
    fh.tensor.type = dtype::f32;
    fh.tensor.shape = {1 << 28};
    fh.tensor.payload_bytes = 1u << 30;
    bad_headers.push_back(encode_frame_header(fh));
  }
  std::vector<std::byte> garbage(frame_header_size);
  std::mt19937 gen{7};
  for (auto& x : garbage)
    x = static_cast<std::byte>(gen());
  for (const auto& h : bad_headers) {
    raw_client c{port};
    BOOST_REQUIRE(c.authenticate(key, "mallory", "B"));
    c.send(h);
    BOOST_TEST(c.closed_by_server());
  }
  {
    raw_client c{port};
    BOOST_REQUIRE(c.authenticate(key, "mallory", "B"));
    c.send(garbage);
    BOOST_TEST(c.closed_by_server());
  }
  BOOST_TEST(b.stats().frames_rejected == bad_headers.size() + 1);
  BOOST_TEST(b.stats().payload_bytes_allocated == 0u);
  { // Truncated frame: a valid 1 MiB header, 100 bytes, hang up. Exactly the
    // validated size is allocated and nothing is delivered.
    raw_client c{port};
    BOOST_REQUIRE(c.authenticate(key, "mallory", "B"));
    c.send(encode_frame_header(tensor_frame_header(2, tensor::zeros(dtype::u8, {1 << 20}))));
    std::vector<std::byte> part(100);
    c.send(part);
  }
  for (int i = 0; i < 100 && b.stats().payload_bytes_allocated == 0; ++i)
    std::this_thread::sleep_for(10ms);
  BOOST_TEST(b.stats().payload_bytes_allocated == (1u << 20));
  BOOST_TEST(ib.received.empty());
  BOOST_TEST(rss_bytes() < rss_before + (32u << 20));
  // A well-formed frame from an authenticated raw client is delivered.
  raw_client c{port};
  BOOST_REQUIRE(c.authenticate(key, "mallory", "B"));
  c.send(good);
  std::vector<std::byte> payload(16, std::byte{9});
  c.send(payload);
  BOOST_REQUIRE(ib.wait_received(1));
  BOOST_TEST(ib.from[0] == "mallory");
  BOOST_TEST(ib.received[0].second.values<std::uint8_t>()[15] == 9);
}

BOOST_AUTO_TEST_CASE(silent_connections_are_dropped_after_the_handshake_timeout) {
  auto o = options("B", generate_key());
  o.handshake_timeout = 300ms;
  data_plane b{o, {}};
  auto port = b.listen("127.0.0.1");
  auto start = std::chrono::steady_clock::now();
  raw_client silent{port};
  raw_client slow{port};
  handshake_message hello;
  hello.name = "slow";
  auto hb = encode_handshake_message(hello);
  slow.send(std::span{hb}.first(20)); // starts, then stalls
  BOOST_TEST(silent.closed_by_server(3s));
  BOOST_TEST(slow.closed_by_server(3s));
  auto took = std::chrono::steady_clock::now() - start;
  BOOST_TEST(took >= 250ms);
  BOOST_TEST(took < 2s);
  BOOST_TEST(b.stats().handshake_timeouts == 2u);
}
