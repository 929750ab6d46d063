#define BOOST_TEST_DYN_LINK
#define BOOST_TEST_MODULE transport_auth
#include <boost/test/unit_test.hpp>

#include <sys/stat.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "runtime/error.hpp"
#include "runtime/net/transport/auth.hpp"

using namespace troupe::runtime;
using namespace troupe::runtime::transport;

namespace {

struct transcript {
  std::vector<handshake_bytes> client_sent;
  std::vector<handshake_bytes> server_sent;
};

/// Runs a handshake to completion in memory, recording both sides' bytes.
transcript run(handshake& c, handshake& s) {
  transcript t;
  auto msg = c.start();
  BOOST_REQUIRE(msg);
  for (int round = 0; round < 4 && msg; ++round) {
    t.client_sent.push_back(*msg);
    auto reply = s.on_message(*msg);
    msg.reset();
    if (!reply)
      break;
    t.server_sent.push_back(*reply);
    msg = c.on_message(*reply);
  }
  return t;
}

struct temp_file {
  std::filesystem::path path = std::filesystem::temp_directory_path() /
                               ("troupe-key-" + std::to_string(::getpid()));
  ~temp_file() { std::filesystem::remove(path); }
};

} // namespace

BOOST_AUTO_TEST_CASE(keys_are_random_and_round_trip_through_files) {
  auto a = generate_key();
  auto b = generate_key();
  BOOST_TEST((a != b));
  temp_file f;
  save_key(f.path, a);
  struct stat st {};
  BOOST_REQUIRE(::stat(f.path.c_str(), &st) == 0);
  BOOST_TEST((st.st_mode & 0777) == 0600u);
  BOOST_TEST((load_key(f.path) == a));
  save_key(f.path, b); // replaces
  BOOST_TEST((load_key(f.path) == b));
}

BOOST_AUTO_TEST_CASE(bad_key_files_are_refused) {
  temp_file f;
  BOOST_CHECK_THROW(load_key(f.path), input_error); // missing
  auto write = [&](const std::string& text, mode_t mode) {
    std::filesystem::remove(f.path);
    std::ofstream{f.path} << text;
    ::chmod(f.path.c_str(), mode);
  };
  std::string good(64, 'a');
  write(good, 0600);
  BOOST_CHECK_NO_THROW(load_key(f.path));
  write(good + "\n", 0600);
  BOOST_CHECK_NO_THROW(load_key(f.path));
  write(good.substr(1), 0600);
  BOOST_CHECK_THROW(load_key(f.path), input_error);
  write(good + "00", 0600);
  BOOST_CHECK_THROW(load_key(f.path), input_error);
  write(std::string(63, 'a') + "g", 0600);
  BOOST_CHECK_THROW(load_key(f.path), input_error);
  write(good, 0644);
  try {
    load_key(f.path);
    BOOST_FAIL("a world-readable key file was accepted");
  } catch (const input_error& e) {
    BOOST_TEST(std::string{e.what()}.find("chmod 600") != std::string::npos);
  }
}

BOOST_AUTO_TEST_CASE(good_handshake_authenticates_both_sides) {
  auto key = generate_key();
  auto c = handshake::client(key, "alice", "bob", auth_mode::hmac);
  auto s = handshake::server(key, "bob", auth_mode::hmac, false);
  auto t = run(c, s);
  BOOST_TEST((c.status() == handshake::state::done));
  BOOST_TEST((s.status() == handshake::state::done));
  BOOST_TEST(c.peer_name() == "bob");
  BOOST_TEST(s.peer_name() == "alice");
  BOOST_TEST(t.client_sent.size() == 2u); // HELLO, RESPONSE
  BOOST_TEST(t.server_sent.size() == 2u); // CHALLENGE, ACCEPT
}

BOOST_AUTO_TEST_CASE(wrong_key_is_rejected_by_both_sides) {
  // The client notices the server's bad MAC.
  auto c = handshake::client(generate_key(), "alice", "bob", auth_mode::hmac);
  auto s = handshake::server(generate_key(), "bob", auth_mode::hmac, false);
  run(c, s);
  BOOST_TEST((c.status() == handshake::state::failed));
  BOOST_TEST(c.error().find("failed authentication") != std::string::npos);
  BOOST_TEST((s.status() != handshake::state::done));

  // The server notices a client that answers without the key.
  auto key = generate_key();
  auto s2 = handshake::server(key, "bob", auth_mode::hmac, false);
  auto c2 = handshake::client(key, "alice", "bob", auth_mode::hmac);
  auto hello = c2.start();
  auto challenge = s2.on_message(*hello);
  BOOST_REQUIRE(challenge);
  handshake_message forged;
  forged.type = handshake_type::response;
  forged.m = compute_mac(generate_key(), 'C', "alice", "bob", decode_handshake_message(*hello).n,
                         decode_handshake_message(*challenge).n);
  auto reply = s2.on_message(encode_handshake_message(forged));
  BOOST_TEST((s2.status() == handshake::state::failed));
  BOOST_REQUIRE(reply);
  BOOST_TEST((decode_handshake_message(*reply).reason == reject_reason::bad_mac));
}

BOOST_AUTO_TEST_CASE(replayed_client_handshake_is_rejected) {
  auto key = generate_key();
  auto c = handshake::client(key, "alice", "bob", auth_mode::hmac);
  auto s = handshake::server(key, "bob", auth_mode::hmac, false);
  auto recorded = run(c, s);
  BOOST_REQUIRE((s.status() == handshake::state::done));
  // An eavesdropper replays the client's bytes into a new session.
  auto s2 = handshake::server(key, "bob", auth_mode::hmac, false);
  std::optional<handshake_bytes> last;
  for (const auto& m : recorded.client_sent)
    last = s2.on_message(m);
  BOOST_TEST((s2.status() == handshake::state::failed));
  BOOST_REQUIRE(last);
  BOOST_TEST((decode_handshake_message(*last).type == handshake_type::reject));
  BOOST_TEST((decode_handshake_message(*last).reason == reject_reason::bad_mac));
}

BOOST_AUTO_TEST_CASE(replayed_server_handshake_is_rejected) {
  auto key = generate_key();
  auto c = handshake::client(key, "alice", "bob", auth_mode::hmac);
  auto s = handshake::server(key, "bob", auth_mode::hmac, false);
  auto recorded = run(c, s);
  // A fake server replays the recorded CHALLENGE to a new client.
  auto c2 = handshake::client(key, "alice", "bob", auth_mode::hmac);
  c2.start();
  auto r = c2.on_message(recorded.server_sent.at(0));
  BOOST_TEST(!r);
  BOOST_TEST((c2.status() == handshake::state::failed));
}

BOOST_AUTO_TEST_CASE(reflected_mac_is_rejected) {
  // The server's own MAC sent back as the client's response must fail
  // (the roles are part of the MAC input).
  auto key = generate_key();
  auto s = handshake::server(key, "bob", auth_mode::hmac, false);
  auto c = handshake::client(key, "alice", "bob", auth_mode::hmac);
  auto challenge = s.on_message(*c.start());
  handshake_message reflected;
  reflected.type = handshake_type::response;
  reflected.m = decode_handshake_message(*challenge).m;
  s.on_message(encode_handshake_message(reflected));
  BOOST_TEST((s.status() == handshake::state::failed));
}

BOOST_AUTO_TEST_CASE(server_name_must_match) {
  auto key = generate_key();
  auto c = handshake::client(key, "alice", "carol", auth_mode::hmac);
  auto s = handshake::server(key, "bob", auth_mode::hmac, false);
  run(c, s);
  BOOST_TEST((c.status() == handshake::state::failed));
  BOOST_TEST(c.error().find("expected 'carol'") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(plain_mode_needs_both_the_flag_and_loopback) {
  cluster_key none{};
  { // server authenticates, client asks for plain
    auto c = handshake::client(none, "alice", "", auth_mode::plain);
    auto s = handshake::server(generate_key(), "bob", auth_mode::hmac, true);
    run(c, s);
    BOOST_TEST((s.status() == handshake::state::failed));
    BOOST_TEST((c.status() == handshake::state::failed));
    BOOST_TEST(c.error().find("plain") != std::string::npos);
  }
  { // plain configured but not loopback
    auto c = handshake::client(none, "alice", "", auth_mode::plain);
    auto s = handshake::server(none, "bob", auth_mode::plain, false);
    run(c, s);
    BOOST_TEST((s.status() == handshake::state::failed));
    BOOST_TEST((c.status() == handshake::state::failed));
  }
  { // plain configured, loopback
    auto c = handshake::client(none, "alice", "bob", auth_mode::plain);
    auto s = handshake::server(none, "bob", auth_mode::plain, true);
    run(c, s);
    BOOST_TEST((s.status() == handshake::state::done));
    BOOST_TEST((c.status() == handshake::state::done));
  }
  { // authenticated client to a plain server: mode mismatch, refused
    auto key = generate_key();
    auto c = handshake::client(key, "alice", "bob", auth_mode::hmac);
    auto s = handshake::server(key, "bob", auth_mode::plain, true);
    run(c, s);
    BOOST_TEST((c.status() == handshake::state::failed));
    BOOST_TEST((s.status() == handshake::state::failed));
  }
}

BOOST_AUTO_TEST_CASE(malformed_handshake_messages_are_rejected) {
  handshake_message m;
  m.type = handshake_type::hello;
  m.name = "alice";
  auto good = encode_handshake_message(m);
  BOOST_CHECK_NO_THROW(decode_handshake_message(good));
  BOOST_CHECK_THROW(decode_handshake_message(std::span{good}.first(100)), input_error);
  auto mutate = [&](std::size_t off, std::uint8_t v) {
    auto b = good;
    b[off] = static_cast<std::byte>(v);
    return b;
  };
  BOOST_CHECK_THROW(decode_handshake_message(mutate(0, 0)), input_error);   // magic
  BOOST_CHECK_THROW(decode_handshake_message(mutate(4, 9)), input_error);   // version
  BOOST_CHECK_THROW(decode_handshake_message(mutate(6, 0)), input_error);   // type
  BOOST_CHECK_THROW(decode_handshake_message(mutate(6, 6)), input_error);   // type
  BOOST_CHECK_THROW(decode_handshake_message(mutate(7, 2)), input_error);   // mode
  BOOST_CHECK_THROW(decode_handshake_message(mutate(8, 1)), input_error);   // reason on hello
  BOOST_CHECK_THROW(decode_handshake_message(mutate(9, 65)), input_error);  // name length
  BOOST_CHECK_THROW(decode_handshake_message(mutate(9, 0)), input_error);   // empty name
  BOOST_CHECK_THROW(decode_handshake_message(mutate(10, 1)), input_error);  // reserved
  BOOST_CHECK_THROW(decode_handshake_message(mutate(12, ' ')), input_error); // bad char
  BOOST_CHECK_THROW(decode_handshake_message(mutate(40, 'x')), input_error); // padding
  // A server fed garbage answers with a REJECT and fails.
  auto s = handshake::server(generate_key(), "bob", auth_mode::hmac, false);
  auto r = s.on_message(mutate(0, 0));
  BOOST_TEST((s.status() == handshake::state::failed));
  BOOST_REQUIRE(r);
  BOOST_TEST((decode_handshake_message(*r).reason == reject_reason::bad_message));
  BOOST_CHECK_THROW(handshake::client(generate_key(), "has space", "", auth_mode::hmac),
                    std::invalid_argument);
}
