// The courier: large tensors between processes over the data plane with CAF
// carrying descriptors. Two actor systems in one process stand for two nodes
// (plain CAF middleman over 127.0.0.1, data plane with an HMAC key):
//  - transfer_table alone: both arrival orders, mismatches, duplicates, the
//    per-peer cap, dropping a peer;
//  - a 1 MiB activation crosses over the data plane intact, a 1 KiB one
//    through CAF; many mixed messages in both directions arrive exactly once;
//  - a third party ("forger", a raw data plane with the key) drives each half
//    by hand: descriptor first, payload first, a payload whose shape
//    disagrees, more unmatched bytes than the cap;
//  - stopping a courier reports it down at its peer and drops its unmatched
//    transfers; deliver(nullptr, ...) is a plain send;
//  - the tensor message registry: the built-in types keep their wire tags, a
//    message type only this test registers crosses the data plane, an
//    unregistered one is refused.

#define BOOST_TEST_DYN_LINK
#define BOOST_TEST_MODULE transport_courier
#include <boost/test/unit_test.hpp>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <caf/all.hpp>
#include <caf/io/all.hpp>

#include "actors/protocol/messages.hpp"
#include "actors/protocol/system_config.hpp"
#include "runtime/net/tensor_inspect.hpp"
#include "runtime/net/transport/auth.hpp"
#include "runtime/net/transport/courier.hpp"
#include "runtime/net/transport/data_plane.hpp"
#include "runtime/net/transport/tensor_message_registry.hpp"
#include "runtime/net/transport/transfer_table.hpp"

namespace rt = troupe::runtime;
using namespace troupe::runtime::transport;
using namespace std::chrono_literals;

namespace {

/// u8 tensor of n bytes whose content is a function of `seed`.
rt::tensor pattern(std::size_t n, std::uint32_t seed) {
  auto t = rt::tensor::empty(rt::dtype::u8, {static_cast<std::int64_t>(n)});
  auto* p = t.mutable_data<std::uint8_t>();
  for (std::size_t i = 0; i < n; ++i)
    p[i] = static_cast<std::uint8_t>((i * 131u + seed * 7u + (i >> 8)) & 0xff);
  return t;
}

bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds limit = 5s) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline)
      return false;
    std::this_thread::sleep_for(2ms);
  }
  return true;
}

// ------------------------------------------------------------ transfer_table

/// A deliver_fn that records what it was given.
struct delivered {
  std::vector<rt::tensor> got;
  transfer_table::deliver_fn fn() {
    return [this](rt::tensor t) { got.push_back(std::move(t)); };
  }
};

void deliver_if_ready(transfer_table::outcome& out) {
  if (out.deliver)
    out.deliver(std::move(out.payload));
}

BOOST_AUTO_TEST_CASE(table_descriptor_then_payload) {
  transfer_table t{1 << 20};
  delivered d;
  auto sent = pattern(100, 1);
  auto a = t.add_descriptor("p", 7, rt::dtype::u8, {100}, d.fn());
  BOOST_CHECK(!a.deliver && !a.error && !a.discarded);
  BOOST_CHECK_EQUAL(t.unmatched(), 1u);
  BOOST_CHECK_EQUAL(t.unmatched_bytes("p"), 0u);
  auto b = t.add_payload("p", 7, sent);
  BOOST_REQUIRE(b.deliver);
  BOOST_CHECK(!b.error);
  deliver_if_ready(b);
  BOOST_REQUIRE_EQUAL(d.got.size(), 1u);
  BOOST_CHECK(rt::bitwise_equal(d.got[0], sent));
  BOOST_CHECK_EQUAL(t.unmatched(), 0u);
}

BOOST_AUTO_TEST_CASE(table_payload_then_descriptor) {
  transfer_table t{1 << 20};
  delivered d;
  auto sent = pattern(100, 2);
  auto a = t.add_payload("p", 7, sent);
  BOOST_CHECK(!a.deliver && !a.error);
  BOOST_CHECK_EQUAL(t.unmatched("p"), 1u);
  BOOST_CHECK_EQUAL(t.unmatched_bytes("p"), 100u);
  // Same id from another peer is another transfer.
  auto other = t.add_descriptor("q", 7, rt::dtype::u8, {100}, d.fn());
  BOOST_CHECK(!other.deliver && !other.error);
  auto b = t.add_descriptor("p", 7, rt::dtype::u8, {100}, d.fn());
  BOOST_REQUIRE(b.deliver);
  deliver_if_ready(b);
  BOOST_REQUIRE_EQUAL(d.got.size(), 1u);
  BOOST_CHECK(rt::bitwise_equal(d.got[0], sent));
  BOOST_CHECK_EQUAL(t.unmatched_bytes("p"), 0u);
  BOOST_CHECK_EQUAL(t.unmatched("p"), 0u);
  BOOST_CHECK_EQUAL(t.unmatched("q"), 1u);
}

BOOST_AUTO_TEST_CASE(table_mismatch_is_an_error_in_either_order) {
  transfer_table t{1 << 20};
  delivered d;
  t.add_descriptor("p", 1, rt::dtype::u8, {8}, d.fn());
  auto shape = t.add_payload("p", 1, pattern(16, 0));
  BOOST_REQUIRE(shape.error);
  BOOST_CHECK(!shape.deliver);
  BOOST_CHECK_MESSAGE(shape.error->find("does not match") != std::string::npos, *shape.error);
  t.add_payload("p", 2, pattern(16, 0));
  auto type = t.add_descriptor("p", 2, rt::dtype::f32, {4}, d.fn()); // same bytes, other dtype
  BOOST_REQUIRE(type.error);
  BOOST_CHECK(!type.deliver);
  BOOST_CHECK(d.got.empty());
  BOOST_CHECK_EQUAL(t.unmatched(), 0u);
  BOOST_CHECK_EQUAL(t.unmatched_bytes("p"), 0u);
}

BOOST_AUTO_TEST_CASE(table_duplicate_halves_are_errors) {
  transfer_table t{1 << 20};
  delivered d;
  t.add_descriptor("p", 1, rt::dtype::u8, {8}, d.fn());
  BOOST_CHECK(t.add_descriptor("p", 1, rt::dtype::u8, {8}, d.fn()).error);
  t.add_payload("p", 2, pattern(8, 0));
  BOOST_CHECK(t.add_payload("p", 2, pattern(8, 0)).error);
  BOOST_CHECK_EQUAL(t.unmatched_bytes("p"), 8u);
}

BOOST_AUTO_TEST_CASE(table_caps_unmatched_payload_bytes_per_peer) {
  transfer_table t{1000};
  BOOST_CHECK(!t.add_payload("p", 1, pattern(600, 0)).error);
  auto over = t.add_payload("p", 2, pattern(600, 0));
  BOOST_REQUIRE(over.error);
  BOOST_CHECK_MESSAGE(over.error->find("cap") != std::string::npos, *over.error);
  BOOST_CHECK_EQUAL(t.unmatched_bytes("p"), 600u);
  BOOST_CHECK(!t.add_payload("q", 1, pattern(600, 0)).error); // per peer
  delivered d;
  auto b = t.add_descriptor("p", 1, rt::dtype::u8, {600}, d.fn());
  BOOST_CHECK(b.deliver);
  BOOST_CHECK(!t.add_payload("p", 3, pattern(1000, 0)).error); // room again
}

BOOST_AUTO_TEST_CASE(table_drop_peer_forgets_and_discards_late_halves) {
  transfer_table t{1 << 20};
  delivered d;
  t.add_descriptor("p", 1, rt::dtype::u8, {8}, d.fn());
  t.add_payload("p", 2, pattern(8, 0));
  t.add_payload("q", 1, pattern(8, 0));
  BOOST_CHECK_EQUAL(t.drop_peer("p"), 2u);
  BOOST_CHECK_EQUAL(t.unmatched(), 1u);
  BOOST_CHECK_EQUAL(t.unmatched_bytes("p"), 0u);
  auto late = t.add_payload("p", 1, pattern(8, 0));
  BOOST_CHECK(late.discarded && !late.deliver && !late.error);
  BOOST_CHECK(t.add_descriptor("p", 3, rt::dtype::u8, {8}, d.fn()).discarded);
  BOOST_CHECK_EQUAL(t.unmatched("p"), 0u);
  t.open_peer("p");
  t.add_descriptor("p", 4, rt::dtype::u8, {8}, d.fn());
  BOOST_CHECK(t.add_payload("p", 4, pattern(8, 0)).deliver);
  auto left = t.clear();
  BOOST_CHECK_EQUAL(left.size(), 1u);
  BOOST_CHECK_EQUAL(left["q"], 1u);
  BOOST_CHECK_EQUAL(t.unmatched(), 0u);
  BOOST_CHECK(d.got.empty()); // nothing delivered by the table itself
}

// ------------------------------------------------------------ two nodes

/// A tensor message the transport has never heard of: only this test's
/// config registers it.
struct probe_msg {
  std::string label;
  rt::tensor data;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, probe_msg& x) {
  return f(caf::meta::type_name("probe_msg"), x.label, x.data);
}

/// What a sink actor received, by message kind.
struct inbox {
  std::mutex mtx;
  std::condition_variable cv;
  std::vector<troupe::actors::activation_msg> activations;
  std::vector<troupe::actors::gradient_msg> gradients;
  std::vector<troupe::actors::collective_msg> collectives;
  std::vector<probe_msg> probes;

  std::size_t total() {
    std::lock_guard<std::mutex> g{mtx};
    return count();
  }
  std::size_t count() const {
    return activations.size() + gradients.size() + collectives.size() + probes.size();
  }
  template <class Msg>
  void add(std::vector<Msg>& v, Msg m) {
    std::lock_guard<std::mutex> g{mtx};
    v.push_back(std::move(m));
    cv.notify_all();
  }
  bool wait_total(std::size_t n, std::chrono::milliseconds limit = 10s) {
    std::unique_lock<std::mutex> g{mtx};
    return cv.wait_for(g, limit, [&] { return count() >= n; });
  }
};

/// Waits for the first activation at `in` and checks its step and bytes.
void expect_activation(inbox& in, std::int64_t step, const rt::tensor& sent) {
  BOOST_REQUIRE(in.wait_total(1));
  std::lock_guard<std::mutex> g{in.mtx};
  BOOST_REQUIRE(!in.activations.empty());
  BOOST_CHECK_EQUAL(in.activations[0].step, step);
  BOOST_CHECK(rt::bitwise_equal(in.activations[0].data, sent));
}

caf::behavior sink_actor(caf::event_based_actor*, std::shared_ptr<inbox> in) {
  return {
      [in](troupe::actors::activation_msg& m) { in->add(in->activations, std::move(m)); },
      [in](troupe::actors::gradient_msg& m) { in->add(in->gradients, std::move(m)); },
      [in](troupe::actors::collective_msg& m) { in->add(in->collectives, std::move(m)); },
      [in](probe_msg& m) { in->add(in->probes, std::move(m)); },
  };
}

/// Calls of a courier's failure handler.
struct failures {
  std::mutex mtx;
  std::condition_variable cv;
  std::vector<std::pair<std::string, std::string>> seen;

  std::function<void(const std::string&, const std::string&)> handler() {
    return [this](const std::string& peer, const std::string& reason) {
      std::lock_guard<std::mutex> g{mtx};
      seen.emplace_back(peer, reason);
      cv.notify_all();
    };
  }
  /// True once a failure for `peer` whose reason contains `needle` was seen.
  bool wait_for(const std::string& peer, const std::string& needle,
                std::chrono::milliseconds limit = 5s) {
    std::unique_lock<std::mutex> g{mtx};
    return cv.wait_for(g, limit, [&] {
      for (const auto& [p, r] : seen)
        if (p == peer && r.find(needle) != std::string::npos)
          return true;
      return false;
    });
  }
  std::size_t count() {
    std::lock_guard<std::mutex> g{mtx};
    return seen.size();
  }
};

class node_config : public troupe::actors::system_config {
public:
  node_config() : troupe::actors::system_config(2) {
    load<caf::io::middleman>();
    add_message_type<probe_msg>("test::probe_msg");
    add_tensor_message<&probe_msg::data>("test::probe_descriptor");
  }
};

/// One "process": an actor system with middleman, a courier, a sink actor,
/// and handles (proxies) to the other node's courier endpoint and sink.
struct node {
  node_config cfg;
  caf::actor_system sys{cfg};
  std::shared_ptr<inbox> in = std::make_shared<inbox>();
  caf::actor sink = sys.spawn(sink_actor, in);
  failures fails;
  std::shared_ptr<courier> c;
  caf::actor peer_endpoint; ///< the other node's courier actor (a proxy)
  caf::actor peer_sink;     ///< the other node's sink (a proxy)

  node(const std::string& name, const cluster_key& key, std::uint64_t max_unmatched = 1ull << 30) {
    courier_options o;
    o.name = name;
    o.key = key;
    o.max_unmatched_bytes = max_unmatched;
    c = courier::start(sys, o, "127.0.0.1");
    c->on_failure(fails.handler());
  }
  ~node() {
    // The courier's and the sink's actors must exit, and proxies go, before
    // the actor system's destructor waits for its actors.
    c->stop();
    peer_endpoint = nullptr;
    peer_sink = nullptr;
    caf::anon_send_exit(sink, caf::exit_reason::user_shutdown);
  }

  /// Why `x` failed ("" when it did not: error() on a value is undefined).
  template <class T>
  std::string why(const caf::expected<T>& x) {
    return x ? std::string{} : sys.render(x.error());
  }
  std::uint16_t publish(const caf::actor& a) {
    auto port = sys.middleman().publish(a, 0, "127.0.0.1");
    BOOST_REQUIRE_MESSAGE(port, "publish failed: " << why(port));
    return *port;
  }
  caf::actor remote(std::uint16_t port) {
    auto a = sys.middleman().remote_actor("127.0.0.1", port);
    BOOST_REQUIRE_MESSAGE(a, "remote_actor failed: " << why(a));
    return *a;
  }
};

/// Makes `from` know `to`: proxies of its courier endpoint and sink, and the
/// data-plane peer (waits until the connection is up).
void introduce(node& from, node& to) {
  from.peer_endpoint = from.remote(to.publish(to.c->endpoint()));
  from.peer_sink = from.remote(to.publish(to.sink));
  auto up = std::make_shared<std::promise<std::optional<std::string>>>();
  auto fut = up->get_future();
  from.c->add_peer(to.c->name(), "127.0.0.1", to.c->port(), from.peer_endpoint,
                   [up](std::optional<std::string> e) { up->set_value(std::move(e)); });
  BOOST_REQUIRE(fut.wait_for(5s) == std::future_status::ready);
  auto err = fut.get();
  BOOST_REQUIRE_MESSAGE(!err, "add_peer failed: " << err.value_or(""));
}

/// Two nodes that know each other.
struct pair_fixture {
  cluster_key key = generate_key();
  node a{"node-a", key};
  node b{"node-b", key};
  pair_fixture() {
    introduce(a, b);
    introduce(b, a);
  }
};

troupe::actors::activation_msg activation(std::int64_t step, rt::tensor data) {
  troupe::actors::activation_msg m;
  m.step = step;
  m.mb = 3;
  m.sample_offset = 64;
  m.training = false;
  m.data = std::move(data);
  return m;
}

BOOST_FIXTURE_TEST_CASE(large_activation_goes_over_the_data_plane, pair_fixture) {
  auto sent = pattern(1 << 20, 42);
  a.c->send(a.peer_sink, activation(7, sent));
  BOOST_REQUIRE(b.in->wait_total(1));
  {
    std::lock_guard<std::mutex> g{b.in->mtx};
    BOOST_REQUIRE_EQUAL(b.in->activations.size(), 1u);
    const auto& got = b.in->activations[0];
    BOOST_CHECK_EQUAL(got.step, 7);
    BOOST_CHECK_EQUAL(got.mb, 3);
    BOOST_CHECK_EQUAL(got.sample_offset, 64);
    BOOST_CHECK(!got.training);
    BOOST_CHECK(rt::bitwise_equal(got.data, sent));
    BOOST_CHECK(!got.data.shares_storage_with(sent));
  }
  auto dp = a.c->dataplane_counters();
  BOOST_CHECK_EQUAL(dp.messages, 1u);
  BOOST_CHECK_EQUAL(dp.bytes, 1u << 20);
  BOOST_CHECK_EQUAL(a.c->caf_counters().messages, 0u);
  BOOST_CHECK_GT(a.c->peer_counters()["node-b"].bytes_sent, 1u << 20);
  BOOST_CHECK_GT(b.c->peer_counters()["node-a"].bytes_received, 1u << 20);
  BOOST_CHECK_EQUAL(b.c->unmatched_transfers(), 0u);
  BOOST_CHECK_EQUAL(a.fails.count() + b.fails.count(), 0u);
}

BOOST_FIXTURE_TEST_CASE(small_activation_goes_through_caf, pair_fixture) {
  auto sent = pattern(1 << 10, 5);
  a.c->send(a.peer_sink, activation(8, sent));
  expect_activation(*b.in, 8, sent);
  BOOST_CHECK_EQUAL(a.c->caf_counters().messages, 1u);
  BOOST_CHECK_EQUAL(a.c->caf_counters().bytes, 1u << 10);
  BOOST_CHECK_EQUAL(a.c->dataplane_counters().messages, 0u);
  BOOST_CHECK_EQUAL(a.c->peer_counters()["node-b"].frames_sent, 0u);
}

/// Sends activations, gradients and collective messages from `from` to the
/// other node's sink, some large and some small; steps start at `base`.
void send_mixed(node& from, int n, int base) {
  for (int i = 0; i < n; ++i) {
    auto step = base + i;
    auto seed = static_cast<std::uint32_t>(step);
    if (i % 3 != 2)
      from.c->send(from.peer_sink,
                   activation(step, pattern((i % 3 == 0) ? (256u << 10) : 512u, seed)));
    troupe::actors::gradient_msg g;
    g.step = step;
    g.mb = 1;
    g.data = pattern((i % 2 == 0) ? (128u << 10) : 256u, seed + 1);
    from.c->send(from.peer_sink, std::move(g));
    troupe::actors::collective_msg m;
    m.op = step;
    m.from = 1;
    m.data = pattern((i % 4 == 0) ? (96u << 10) : 64u, seed + 2);
    from.c->send(from.peer_sink, std::move(m));
  }
}

/// Checks that `in` got exactly the messages send_mixed(n, base) sent.
void check_mixed(inbox& in, int n, int base) {
  std::lock_guard<std::mutex> g{in.mtx};
  std::map<std::int64_t, int> acts, grads, colls;
  for (const auto& m : in.activations) {
    auto i = static_cast<int>(m.step - base);
    std::size_t bytes = (i % 3 == 0) ? (256u << 10) : 512u;
    BOOST_CHECK(rt::bitwise_equal(m.data, pattern(bytes, static_cast<std::uint32_t>(m.step))));
    ++acts[m.step];
  }
  for (const auto& m : in.gradients) {
    auto i = static_cast<int>(m.step - base);
    std::size_t bytes = (i % 2 == 0) ? (128u << 10) : 256u;
    BOOST_CHECK(rt::bitwise_equal(m.data, pattern(bytes, static_cast<std::uint32_t>(m.step) + 1)));
    ++grads[m.step];
  }
  for (const auto& m : in.collectives) {
    auto i = static_cast<int>(m.op - base);
    std::size_t bytes = (i % 4 == 0) ? (96u << 10) : 64u;
    BOOST_CHECK(rt::bitwise_equal(m.data, pattern(bytes, static_cast<std::uint32_t>(m.op) + 2)));
    ++colls[m.op];
  }
  for (int i = 0; i < n; ++i) {
    if (i % 3 != 2)
      BOOST_CHECK_EQUAL(acts[base + i], 1);
    BOOST_CHECK_EQUAL(grads[base + i], 1);
    BOOST_CHECK_EQUAL(colls[base + i], 1);
  }
  BOOST_CHECK_EQUAL(acts.size(), static_cast<std::size_t>(n - n / 3));
  BOOST_CHECK_EQUAL(grads.size() + colls.size(), static_cast<std::size_t>(2 * n));
}

BOOST_FIXTURE_TEST_CASE(many_mixed_messages_both_directions_arrive_once, pair_fixture) {
  constexpr int n = 150; // 2n + n - n/3 messages each way, ~30 MiB over the data plane
  const std::size_t expected = 2 * n + (n - n / 3);
  // From non-actor threads, like device threads.
  std::thread ta{[&] { send_mixed(a, n, 1000); }};
  std::thread tb{[&] { send_mixed(b, n, 5000); }};
  ta.join();
  tb.join();
  BOOST_REQUIRE(b.in->wait_total(expected, 20s));
  BOOST_REQUIRE(a.in->wait_total(expected, 20s));
  std::this_thread::sleep_for(100ms); // nothing more may arrive
  BOOST_CHECK_EQUAL(b.in->total(), expected);
  BOOST_CHECK_EQUAL(a.in->total(), expected);
  check_mixed(*b.in, n, 1000);
  check_mixed(*a.in, n, 5000);
  for (auto* x : {&a, &b}) {
    auto dp = x->c->dataplane_counters();
    auto inline_ = x->c->caf_counters();
    BOOST_CHECK_GT(dp.messages, 0u);
    BOOST_CHECK_GT(inline_.messages, 0u);
    BOOST_CHECK_EQUAL(dp.messages + inline_.messages, expected);
    BOOST_CHECK_EQUAL(x->c->unmatched_transfers(), 0u);
    BOOST_CHECK_EQUAL(x->fails.count(), 0u);
  }
}

BOOST_FIXTURE_TEST_CASE(courier_stopped_reports_peer_down_and_drops_unmatched, pair_fixture) {
  // A descriptor from node-a whose payload never comes: unmatched on node-b.
  transfer_descriptor<troupe::actors::activation_msg> d;
  d.transfer_id = 1u << 30;
  d.sender = "node-a";
  d.dest = a.peer_sink;
  d.type = static_cast<std::uint8_t>(rt::dtype::u8);
  d.shape = {1 << 20};
  caf::anon_send(a.peer_endpoint, d);
  BOOST_REQUIRE(wait_until([&] { return b.c->unmatched_transfers() == 1; }));
  a.c->stop();
  BOOST_CHECK(b.fails.wait_for("node-a", "connection lost"));
  BOOST_CHECK(b.fails.wait_for("node-a", "1 unmatched"));
  BOOST_CHECK_EQUAL(b.c->unmatched_transfers(), 0u);
  // A late descriptor from the peer that is down is not kept.
  d.transfer_id += 1;
  caf::anon_send(a.peer_endpoint, d);
  std::this_thread::sleep_for(200ms);
  BOOST_CHECK_EQUAL(b.c->unmatched_transfers(), 0u);
  BOOST_CHECK_EQUAL(b.in->total(), 0u);
  // Without a data-plane connection, node-b's large messages travel inline.
  auto sent = pattern(1 << 20, 3);
  b.c->send(b.peer_sink, activation(2, sent));
  expect_activation(*a.in, 2, sent);
  BOOST_CHECK_EQUAL(b.c->caf_counters().messages, 1u);
  BOOST_CHECK_EQUAL(b.c->dataplane_counters().messages, 0u);
  a.c->stop(); // idempotent
  // A stopped courier sends inline.
  a.c->send(a.peer_sink, activation(1, pattern(1 << 20, 1)));
  BOOST_CHECK_EQUAL(a.c->caf_counters().messages, 1u);
  BOOST_CHECK_EQUAL(a.c->dataplane_counters().messages, 0u);
}

BOOST_FIXTURE_TEST_CASE(transfers_of_an_ended_job_are_dropped_and_counted, pair_fixture) {
  // Job 5 ended on node-b (its agent tore the job down): node-a's late
  // transfers stamped job 5 are paired by their own ids, dropped and
  // counted, never delivered; job 6's arrive. No failure either way.
  b.c->end_job(5);
  auto job5 = a.c->for_job(5);
  auto job6 = a.c->for_job(6);
  job5->send(a.peer_sink, activation(1, pattern(1 << 20, 1)));
  job5->send(a.peer_sink, activation(2, pattern(1 << 20, 2)));
  BOOST_REQUIRE(wait_until([&] { return b.c->late_transfers() == 2; }));
  auto sent = pattern(1 << 20, 3);
  job6->send(a.peer_sink, activation(3, sent));
  expect_activation(*b.in, 3, sent);
  std::this_thread::sleep_for(100ms);
  BOOST_CHECK_EQUAL(b.in->total(), 1u);
  BOOST_CHECK_EQUAL(a.c->dataplane_counters().messages, 3u); // all three took the data plane
  BOOST_CHECK_EQUAL(b.c->late_transfers(), 2u);
  BOOST_CHECK_EQUAL(b.c->unmatched_transfers(), 0u);
  BOOST_CHECK_EQUAL(a.fails.count() + b.fails.count(), 0u);
  job5.reset(); // a view stops nothing
  a.c->send(a.peer_sink, activation(4, pattern(1 << 20, 4)));
  BOOST_CHECK(b.in->wait_total(2));
}

BOOST_FIXTURE_TEST_CASE(a_transfer_to_an_actor_that_is_gone_is_dropped_and_counted, pair_fixture) {
  // A job's actor on node-b exited (the job was aborted) while node-a still
  // sends to it: the descriptor's handle decodes as null; the transfer is a
  // late one, not a peer that "names another transfer, sender or process".
  auto gone = b.sys.spawn(sink_actor, b.in);
  auto proxy = a.remote(b.publish(gone));
  caf::anon_send_exit(gone, caf::exit_reason::user_shutdown);
  gone = nullptr;
  std::this_thread::sleep_for(100ms);
  a.c->send(proxy, activation(1, pattern(1 << 20, 1)));
  BOOST_REQUIRE(wait_until([&] { return b.c->late_transfers() == 1; }));
  BOOST_CHECK_EQUAL(b.c->unmatched_transfers(), 0u);
  BOOST_CHECK_EQUAL(b.in->total(), 0u);
  BOOST_CHECK_EQUAL(a.fails.count() + b.fails.count(), 0u);
}

BOOST_FIXTURE_TEST_CASE(an_orderly_stop_is_not_a_failure, pair_fixture) {
  // node-a shuts down with nothing in flight: node-b logs it at info and
  // calls no failure handler (a failure is a connection lost mid-frame or
  // with transfers unmatched, as in the case above).
  auto sent = pattern(1 << 20, 7);
  a.c->send(a.peer_sink, activation(1, sent));
  expect_activation(*b.in, 1, sent);
  a.c->stop();
  std::this_thread::sleep_for(300ms);
  BOOST_CHECK_EQUAL(b.fails.count(), 0u);
}

BOOST_FIXTURE_TEST_CASE(a_cut_connection_is_reported_and_rebuilt, pair_fixture) {
  // The connection is cut with a 16 MiB transfer in flight: node-a's side
  // fails its pending send (a failure, not an orderly close), both couriers
  // connect again, and large messages take the data plane again.
  a.c->send(a.peer_sink, activation(1, pattern(16 << 20, 1)));
  a.c->cut_peer("node-b");
  BOOST_CHECK(a.fails.wait_for("node-b", "connection lost"));
  BOOST_REQUIRE(wait_until(
      [&] {
        auto before = a.c->dataplane_counters().messages;
        a.c->send(a.peer_sink, activation(2, pattern(1 << 20, 2)));
        return a.c->dataplane_counters().messages > before;
      },
      10s));
  BOOST_REQUIRE(wait_until([&] {
    std::lock_guard<std::mutex> g{b.in->mtx};
    for (const auto& m : b.in->activations)
      if (m.step == 2 && m.data.nbytes() == (1u << 20))
        return true;
    return false;
  }));
}

/// node-b plus a third party holding the cluster key that drives each half
/// of a transfer by hand: payloads from a raw data plane named "forger",
/// descriptors (claiming sender "forger") through node-a's CAF connection.
struct forger_fixture {
  cluster_key key = generate_key();
  node a{"node-a", key};
  node b{"node-b", key, 1u << 20}; // at most 1 MiB unmatched per peer
  data_plane forger{[this] {
                      data_plane_options o;
                      o.name = "forger";
                      o.key = key;
                      return o;
                    }(),
                    {}};
  forger_fixture() {
    introduce(a, b);
    forger.connect("node-b", "127.0.0.1", b.c->port());
  }
  ~forger_fixture() { forger.stop(); }

  void descriptor(std::uint64_t id, rt::shape_t shape, std::int64_t step) {
    transfer_descriptor<troupe::actors::activation_msg> d;
    d.transfer_id = id;
    d.sender = "forger";
    d.dest = a.peer_sink;
    d.type = static_cast<std::uint8_t>(rt::dtype::u8);
    d.shape = std::move(shape);
    d.msg.step = step;
    caf::anon_send(a.peer_endpoint, std::move(d));
  }
  void payload(std::uint64_t id, rt::tensor t) {
    auto sent = std::make_shared<std::promise<std::optional<std::string>>>();
    auto fut = sent->get_future();
    forger.send("node-b", id, std::move(t),
                [sent](std::optional<std::string> e) { sent->set_value(std::move(e)); });
    auto err = fut.get();
    BOOST_REQUIRE_MESSAGE(!err, "forged payload not sent: " << err.value_or(""));
  }
  bool unmatched_is(std::size_t n) {
    return wait_until([&] { return b.c->unmatched_transfers() == n; });
  }
};

BOOST_FIXTURE_TEST_CASE(descriptor_before_payload, forger_fixture) {
  descriptor(1, {4096}, 11);
  BOOST_REQUIRE(unmatched_is(1));
  BOOST_CHECK_EQUAL(b.in->total(), 0u);
  auto sent = pattern(4096, 11);
  payload(1, sent);
  expect_activation(*b.in, 11, sent);
  BOOST_CHECK_EQUAL(b.c->unmatched_transfers(), 0u);
}

BOOST_FIXTURE_TEST_CASE(payload_before_descriptor, forger_fixture) {
  auto sent = pattern(4096, 12);
  payload(2, sent);
  BOOST_REQUIRE(unmatched_is(1));
  BOOST_CHECK_EQUAL(b.in->total(), 0u);
  descriptor(2, {4096}, 12);
  expect_activation(*b.in, 12, sent);
  BOOST_CHECK_EQUAL(b.c->unmatched_transfers(), 0u);
}

BOOST_FIXTURE_TEST_CASE(payload_shape_mismatch_calls_the_failure_handler, forger_fixture) {
  payload(3, pattern(4096, 0));
  BOOST_REQUIRE(unmatched_is(1));
  descriptor(3, {2048, 2}, 13); // same bytes, other shape
  BOOST_CHECK(b.fails.wait_for("forger", "does not match"));
  BOOST_CHECK_EQUAL(b.c->unmatched_transfers(), 0u);
  std::this_thread::sleep_for(50ms);
  BOOST_CHECK_EQUAL(b.in->total(), 0u);
}

BOOST_FIXTURE_TEST_CASE(unmatched_bytes_over_the_cap_call_the_failure_handler, forger_fixture) {
  payload(4, pattern(768u << 10, 0));
  BOOST_REQUIRE(unmatched_is(1));
  payload(5, pattern(768u << 10, 0));
  BOOST_CHECK(b.fails.wait_for("forger", "cap"));
  BOOST_CHECK_EQUAL(b.c->unmatched_transfers(), 1u);
  // The forger going away drops what it left.
  forger.stop();
  BOOST_CHECK(b.fails.wait_for("forger", "connection lost"));
  BOOST_CHECK(unmatched_is(0));
}

BOOST_AUTO_TEST_CASE(deliver_without_courier_or_locally_is_a_plain_send) {
  node n{"solo", generate_key()};
  auto sent = pattern(1 << 20, 9);
  deliver(std::shared_ptr<courier>{}, n.sink, activation(1, sent));
  deliver(n.c, n.sink, activation(2, sent)); // local destination: inline, whatever the size
  BOOST_REQUIRE(n.in->wait_total(2));
  {
    std::lock_guard<std::mutex> g{n.in->mtx};
    for (const auto& m : n.in->activations)
      BOOST_CHECK(m.data.shares_storage_with(sent)); // in process: no copy
  }
  BOOST_CHECK_EQUAL(n.c->caf_counters().messages, 1u);
  BOOST_CHECK_EQUAL(n.c->caf_counters().bytes, 1u << 20);
  BOOST_CHECK_EQUAL(n.c->dataplane_counters().messages, 0u);
}

// ------------------------------------------------------------ registry

BOOST_AUTO_TEST_CASE(builtin_tensor_messages_keep_their_wire_tags) {
  troupe::actors::system_config cfg{1};
  auto reg = cfg.tensor_messages();
  BOOST_REQUIRE_EQUAL(reg->size(), 4u);
  BOOST_CHECK_EQUAL(reg->at<troupe::actors::activation_msg>().tag, 1);
  BOOST_CHECK_EQUAL(reg->at<troupe::actors::gradient_msg>().tag, 2);
  BOOST_CHECK_EQUAL(reg->at<troupe::actors::collective_msg>().tag, 3);
  BOOST_CHECK_EQUAL(reg->at<troupe::actors::ps_msg>().tag, 4);
  BOOST_CHECK_EQUAL(reg->at<troupe::actors::ps_msg>().descriptor_name, "troupe::ps_descriptor");
  BOOST_CHECK(reg->by_tag(0) == nullptr);
  BOOST_CHECK(reg->by_tag(5) == nullptr);
  BOOST_CHECK_THROW(reg->at<troupe::actors::labels_msg>(), std::logic_error);
}

BOOST_AUTO_TEST_CASE(a_tensor_message_registered_twice_is_refused) {
  caf::actor_system_config cfg;
  tensor_message_registry reg;
  reg.add<&probe_msg::data>(cfg, "test::probe_descriptor");
  BOOST_CHECK_THROW(reg.add<&probe_msg::data>(cfg, "test::other_descriptor"), std::logic_error);
  BOOST_CHECK_THROW(reg.add<&troupe::actors::ps_msg::data>(cfg, "test::probe_descriptor"), std::logic_error);
}

BOOST_FIXTURE_TEST_CASE(a_message_type_the_transport_does_not_know_crosses_both_ways,
                        pair_fixture) {
  auto large = pattern(1 << 20, 21);
  auto small = pattern(1 << 10, 22);
  a.c->send(a.peer_sink, probe_msg{"large", large});
  a.c->send(a.peer_sink, probe_msg{"small", small});
  BOOST_REQUIRE(b.in->wait_total(2));
  {
    std::lock_guard<std::mutex> g{b.in->mtx};
    BOOST_REQUIRE_EQUAL(b.in->probes.size(), 2u);
    for (const auto& m : b.in->probes)
      BOOST_CHECK(rt::bitwise_equal(m.data, m.label == "large" ? large : small));
  }
  BOOST_CHECK_EQUAL(a.c->dataplane_counters().messages, 1u);
  BOOST_CHECK_EQUAL(a.c->caf_counters().messages, 1u);
  BOOST_CHECK_EQUAL(a.fails.count() + b.fails.count(), 0u);
}

BOOST_FIXTURE_TEST_CASE(an_unregistered_message_type_is_refused, pair_fixture) {
  BOOST_CHECK_THROW(a.c->send(a.peer_sink, troupe::actors::labels_msg{}), std::logic_error);
  BOOST_CHECK_EQUAL(a.c->caf_counters().messages, 0u);
}

} // namespace
