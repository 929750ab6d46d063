// The supervisor's side of the join handshake, in process (the same actor a
// `troupe supervisor` publishes): mismatched builds are refused with a clear
// reason, a node must prove the name it claims, and a recorded join cannot be
// replayed. Also the pieces the supervisor and node agents exchange as JSON.

#define BOOST_TEST_MODULE cluster_join
#include <boost/test/unit_test.hpp>

#include <thread>

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/scoped_actor.hpp>

#include "../io/temp_dir.hpp"
#include "actors/cluster/cluster_protocol.hpp"
#include "actors/cluster/node_agent.hpp"
#include "actors/cluster/supervisor.hpp"
#include "actors/pipeline/layer_shard.hpp"
#include "actors/plan/plan.hpp"
#include "actors/protocol/system_config.hpp"
#include "models/zoo.hpp"
#include "runtime/error.hpp"
#include "runtime/net/caf_error.hpp"
#include "runtime/net/security/certs.hpp"
#include "runtime/net/security/node_identity.hpp"

namespace a = troupe::actors;
namespace rt = troupe::runtime;
using namespace std::chrono_literals;

namespace {

struct fixture {
  troupe::test::temp_dir dir;
  rt::tls_files node_a, node_b;
  troupe::actors::system_config cfg;
  caf::actor_system sys{cfg};
  caf::actor sup;

  fixture() {
    rt::generate_ca(dir.path());
    node_a = rt::issue_certificate(dir.path(), dir.path(), "a", {});
    node_b = rt::issue_certificate(dir.path(), dir.path(), "b", {});
    sup = a::spawn_supervisor(sys, config());
  }
  ~fixture() { caf::anon_send_exit(sup, caf::exit_reason::user_shutdown); }

  a::supervisor_config config() const {
    a::supervisor_config sc;
    sc.local_node = false;
    sc.ca = rt::ca_certificate_path(dir.path());
    return sc;
  }

  /// Joins `name` and declares it ready with `agent` as its node agent.
  bool join_ready(const std::string& name, const rt::tls_files& files, const caf::actor& agent) {
    auto welcome = ask(a::join_atom::value, signed_join(name, files));
    if (welcome.find("refused") != std::string::npos)
      return false;
    caf::scoped_actor self{sys};
    bool ready = false;
    self->request(sup, 5s, a::ready_atom::value, name, agent, std::string{"127.0.0.1"},
                  std::uint16_t{1}, caf::actor{})
        .receive([&](bool ok) { ready = ok; }, [&](caf::error&) {});
    return ready;
  }

  /// The reply to `xs`, or the refusal's text prefixed with "refused: ".
  template <class... Ts>
  std::string ask(Ts... xs) {
    caf::scoped_actor self{sys};
    std::string r;
    self->request(sup, 5s, xs...)
        .receive([&](std::string& s) { r = s; },
                 [&](caf::error& e) { r = "refused: " + rt::describe(sys, e); });
    return r;
  }

  std::string hello(const std::string& name) {
    return ask(a::hello_atom::value, troupe::actors::protocol_version,
               troupe::actors::message_types_hash(), name);
  }

  /// A join message for `name`, signed with `files`.
  std::string signed_join(const std::string& name, const rt::tls_files& files) {
    auto challenge = nlohmann::json::parse(hello(name));
    auto nonce = challenge.at("nonce").get<std::string>();
    a::node_description d;
    d.name = name;
    d.host = "test";
    d.pid = 1;
    d.cores = 1;
    d.devices = a::parse_device_list("cpu:1");
    auto j = to_json(d);
    j["nonce"] = nonce;
    j["certificate"] = rt::read_certificate_pem(files.certificate);
    j["signature"] = rt::sign_message(
        files, rt::join_proof_message(nonce, name, challenge.at("supervisor").get<std::string>()));
    return j.dump();
  }
};

} // namespace

BOOST_FIXTURE_TEST_CASE(a_mismatched_build_is_refused_with_the_reason, fixture) {
  auto r = ask(a::hello_atom::value, troupe::actors::protocol_version + 1,
               troupe::actors::message_types_hash(), std::string{"a"});
  BOOST_TEST(r.find("refused") == 0);
  BOOST_TEST(r.find("protocol version") != std::string::npos, r);
  r = ask(a::hello_atom::value, troupe::actors::protocol_version,
          troupe::actors::message_types_hash() ^ 1, std::string{"a"});
  BOOST_TEST(r.find("different message types") != std::string::npos, r);
  BOOST_TEST(hello("a").find("nonce") != std::string::npos);
}

BOOST_FIXTURE_TEST_CASE(a_node_proves_its_name_and_cannot_replay_a_join, fixture) {
  auto join = signed_join("a", node_a);
  auto welcome = ask(a::join_atom::value, join);
  BOOST_TEST_REQUIRE(welcome.find("refused") == std::string::npos, welcome);
  auto w = nlohmann::json::parse(welcome);
  BOOST_TEST(w.at("key").get<std::string>().size() == 64u);
  // The same bytes again: the challenge was used up.
  auto replay = ask(a::join_atom::value, join);
  BOOST_TEST(replay.find("already used") != std::string::npos, replay);
}

BOOST_FIXTURE_TEST_CASE(a_certificate_of_another_name_is_refused, fixture) {
  auto r = ask(a::join_atom::value, signed_join("a", node_b));
  BOOST_TEST(r.find("does not match node name 'a'") != std::string::npos, r);
  // A made-up nonce is refused before any signature is looked at.
  auto j = nlohmann::json::parse(signed_join("b", node_b));
  j["nonce"] = rt::random_nonce_hex();
  r = ask(a::join_atom::value, j.dump());
  BOOST_TEST(r.find("already used") != std::string::npos, r);
  r = ask(a::join_atom::value, std::string{"{not json"});
  BOOST_TEST(r.find("refused: ") == 0, r);
}

namespace {
using pinged_atom = caf::atom_constant<caf::atom("pinged")>;

/// A node agent that tells `observer` of each heartbeat. `hang`: it keeps
/// the first one unanswered and exits, like a process killed mid-ping.
caf::behavior fake_agent(caf::event_based_actor* self, caf::actor observer, bool hang) {
  return {[=](a::ping_atom) -> caf::result<std::string> {
    self->send(observer, pinged_atom::value, self->address());
    if (!hang)
      return std::string{"{}"};
    auto unanswered = self->make_response_promise<std::string>();
    self->quit();
    return unanswered;
  }};
}
} // namespace

BOOST_FIXTURE_TEST_CASE(a_rejoined_node_outlives_its_old_selfs_unanswered_heartbeat, fixture) {
  auto sc = config();
  sc.ping_interval = 20ms;
  sc.ping_timeout = 300ms;
  caf::anon_send_exit(sup, caf::exit_reason::user_shutdown);
  sup = a::spawn_supervisor(sys, sc);
  caf::scoped_actor self{sys};
  auto old_agent = sys.spawn(fake_agent, caf::actor{self}, true);
  BOOST_TEST_REQUIRE(join_ready("a", node_a, old_agent));
  bool pinged = false;
  self->receive([&](pinged_atom, caf::actor_addr&) { pinged = true; }, caf::after(5s) >> [] {});
  BOOST_TEST_REQUIRE(pinged);
  // The old agent is gone with its heartbeat unanswered; the supervisor
  // drops the node, which joins again under the same name at once.
  caf::actor fresh;
  for (int i = 0; i < 250 && !fresh; ++i) {
    auto candidate = sys.spawn(fake_agent, caf::actor{self}, false);
    if (join_ready("a", node_a, candidate)) {
      fresh = candidate;
    } else { // the supervisor has not seen the old one go yet
      caf::anon_send_exit(candidate, caf::exit_reason::user_shutdown);
      std::this_thread::sleep_for(2ms);
    }
  }
  BOOST_TEST_REQUIRE(static_cast<bool>(fresh));
  self->monitor(fresh);
  // Past the old heartbeat's deadline the new agent is still pinged, and
  // never told it was dropped.
  int pings = 0;
  bool dropped = false;
  const auto until = std::chrono::steady_clock::now() + 2 * sc.ping_timeout;
  while (std::chrono::steady_clock::now() < until && !dropped)
    self->receive([&](pinged_atom, caf::actor_addr& from) { pings += from == fresh.address(); },
                  [&](caf::down_msg&) { dropped = true; }, caf::after(50ms) >> [] {});
  BOOST_TEST(!dropped);
  BOOST_TEST(pings > 3);
  caf::anon_send_exit(fresh, caf::exit_reason::user_shutdown);
}

BOOST_AUTO_TEST_CASE(device_lists_parse_and_bad_ones_are_named) {
  auto d = a::parse_device_list("cpu:2,cpu:1x4");
  BOOST_TEST_REQUIRE(d.size() == 3u);
  BOOST_TEST(d[0].name == "cpu:0");
  BOOST_TEST(d[2].name == "cpu:2");
  BOOST_TEST(d[2].threads == 4);
  for (const char* bad :
       {"", "gpu:1", "cpu:", "cpu:0", "cpu:x", "cpu:2x0", "cpu:1,,cpu:1", "cpu:99999"})
    BOOST_CHECK_THROW(a::parse_device_list(bad), rt::input_error);
}

BOOST_AUTO_TEST_CASE(stages_are_placed_round_robin_across_nodes) {
  a::train_options o;
  o.model = "mlp";
  o.stages = 3;
  std::vector<a::device_slot> devices{
      {"cpu:0", "a"}, {"cpu:1", "a"}, {"cpu:0", "b"}, {"cpu:0", "c"}};
  auto p = a::make_plan(o, devices);
  BOOST_TEST_REQUIRE(p.devices.size() == 3u);
  BOOST_TEST(p.devices[0].node == "a");
  BOOST_TEST(p.devices[1].node == "b");
  BOOST_TEST(p.devices[2].node == "c");
  o.stages = 5;
  BOOST_CHECK_THROW(a::make_plan(o, devices), rt::input_error);
}

BOOST_AUTO_TEST_CASE(shard_configs_round_trip_through_json) {
  a::shard_config c;
  c.stage = 1;
  c.stages = 2;
  c.model = troupe::models::zoo_model("mlp");
  c.chunks = {{2, c.model.layers.size()}};
  c.optimizer = {{"type", "adam"}, {"lr", 0.001}};
  c.seed = 7;
  c.schedule = a::schedule_kind::one_f_one_b;
  c.fault_step = 3;
  auto back = a::shard_config_from_json(to_json(c));
  BOOST_TEST(to_json(back) == to_json(c));
  auto j = to_json(c);
  j["chunks"] = {{2, 1000}};
  BOOST_CHECK_THROW(a::shard_config_from_json(j), rt::input_error);
  j["chunks"] = nlohmann::json::array();
  BOOST_CHECK_THROW(a::shard_config_from_json(j), rt::input_error);
  // Interleaved: several chunks per shard travel to the node agent.
  c.chunks = {{0, 1}, {2, 3}};
  c.schedule = a::schedule_kind::interleaved;
  back = a::shard_config_from_json(to_json(c));
  BOOST_TEST(back.chunks.size() == 2u);
  BOOST_TEST((back.chunks[1] == troupe::models::layer_range{2, 3}));
  j = to_json(c);
  j.erase("seed");
  BOOST_CHECK_THROW(a::shard_config_from_json(j), rt::input_error);
  BOOST_CHECK_THROW(
      a::device_config_from_json({{"name", "cpu:0"}, {"device", "cpu"}, {"threads", 0}}),
      rt::input_error);
}
