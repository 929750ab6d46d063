#include "runtime/net/transport/auth.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <system_error>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "runtime/error.hpp"

namespace troupe::runtime::transport {

namespace {

// Layout (little-endian): 0 magic u32 | 4 version u16 | 6 type u8 | 7 mode u8
// | 8 reason u8 | 9 name_len u8 | 10 reserved u16 (zero) | 12 name[64] (zero
// padded) | 76 nonce[32] | 108 mac[32] | 140 end
constexpr std::size_t hs_off_magic = 0, hs_off_version = 4, hs_off_type = 6, hs_off_mode = 7,
                      hs_off_reason = 8, hs_off_name_len = 9, hs_off_reserved = 10,
                      hs_off_name = 12, hs_off_nonce = 76, hs_off_mac = 108;
static_assert(hs_off_name + max_party_name == hs_off_nonce);
static_assert(hs_off_mac + mac_bytes == handshake_message_size);

constexpr std::string_view mac_label = "troupe-dataplane-auth/v1";

void random_bytes(std::uint8_t* p, std::size_t n) {
  if (RAND_bytes(p, static_cast<int>(n)) != 1)
    throw std::runtime_error("OpenSSL RAND_bytes failed");
}

[[noreturn]] void bad(const std::string& what) {
  throw input_error("handshake message rejected: " + what);
}

bool carries_name(handshake_type t) {
  return t == handshake_type::hello || t == handshake_type::challenge ||
         t == handshake_type::accept;
}

} // namespace

cluster_key generate_key() {
  cluster_key k{};
  random_bytes(k.data(), k.size());
  return k;
}

cluster_key load_key(const std::filesystem::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    throw input_error("cluster key file " + path.string() + ": " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    throw input_error("cluster key file " + path.string() + ": " + std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw input_error("cluster key file " + path.string() + " is not a regular file");
  }
  if ((st.st_mode & 077) != 0) {
    ::close(fd);
    throw input_error("cluster key file " + path.string() +
                      " is accessible by group or others (chmod 600 it)");
  }
  char buf[2 * key_bytes + 3];
  ssize_t n = ::read(fd, buf, sizeof buf);
  ::close(fd);
  if (n < 0)
    throw input_error("cluster key file " + path.string() + ": " + std::strerror(errno));
  std::string_view text{buf, static_cast<std::size_t>(n)};
  if (text.ends_with('\n'))
    text.remove_suffix(1);
  if (text.ends_with('\r'))
    text.remove_suffix(1);
  cluster_key k = key_from_hex(text, "cluster key file " + path.string());
  OPENSSL_cleanse(buf, sizeof buf);
  return k;
}

std::string key_to_hex(const cluster_key& key) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string text;
  for (auto b : key) {
    text.push_back(digits[b >> 4]);
    text.push_back(digits[b & 0xf]);
  }
  return text;
}

cluster_key key_from_hex(std::string_view text, std::string_view what) {
  if (text.size() != 2 * key_bytes)
    throw input_error(std::string{what} + " must hold exactly " + std::to_string(2 * key_bytes) +
                      " hex digits");
  auto nibble = [&](char c) -> std::uint8_t {
    if (c >= '0' && c <= '9')
      return static_cast<std::uint8_t>(c - '0');
    if (c >= 'a' && c <= 'f')
      return static_cast<std::uint8_t>(c - 'a' + 10);
    if (c >= 'A' && c <= 'F')
      return static_cast<std::uint8_t>(c - 'A' + 10);
    throw input_error(std::string{what} + " holds a non-hex character");
  };
  cluster_key k{};
  for (std::size_t i = 0; i < key_bytes; ++i)
    k[i] = static_cast<std::uint8_t>(nibble(text[2 * i]) << 4 | nibble(text[2 * i + 1]));
  return k;
}

void save_key(const std::filesystem::path& path, const cluster_key& key) {
  std::string text = key_to_hex(key);
  text.push_back('\n');
  ::unlink(path.c_str());
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0)
    throw std::system_error(errno, std::generic_category(), "cluster key file " + path.string());
  auto written = ::write(fd, text.data(), text.size());
  int err = errno;
  ::close(fd);
  OPENSSL_cleanse(text.data(), text.size());
  if (written != static_cast<ssize_t>(2 * key_bytes + 1))
    throw std::system_error(err, std::generic_category(), "cluster key file " + path.string());
}

std::string_view to_string(reject_reason r) noexcept {
  switch (r) {
  case reject_reason::none:
    return "none";
  case reject_reason::bad_mac:
    return "authentication failed (wrong cluster key?)";
  case reject_reason::plain_refused:
    return "plain (unauthenticated) connections are refused (allowed only when explicitly "
           "enabled and both endpoints are loopback)";
  case reject_reason::mode_mismatch:
    return "authentication mode mismatch";
  case reject_reason::bad_message:
    return "malformed handshake message";
  }
  return "unknown";
}

bool valid_party_name(std::string_view name) noexcept {
  if (name.empty() || name.size() > max_party_name)
    return false;
  for (char c : name)
    if (c < 0x21 || c > 0x7e)
      return false;
  return true;
}

handshake_bytes encode_handshake_message(const handshake_message& m) {
  if (m.name.size() > max_party_name)
    throw std::invalid_argument("handshake: name longer than " + std::to_string(max_party_name));
  handshake_bytes out{};
  auto put8 = [&](std::size_t off, std::uint8_t v) { out[off] = static_cast<std::byte>(v); };
  for (std::size_t i = 0; i < 4; ++i)
    put8(hs_off_magic + i, static_cast<std::uint8_t>(auth_magic >> (8 * i)));
  put8(hs_off_version, static_cast<std::uint8_t>(auth_version & 0xff));
  put8(hs_off_version + 1, static_cast<std::uint8_t>(auth_version >> 8));
  put8(hs_off_type, static_cast<std::uint8_t>(m.type));
  put8(hs_off_mode, static_cast<std::uint8_t>(m.mode));
  put8(hs_off_reason, static_cast<std::uint8_t>(m.reason));
  put8(hs_off_name_len, static_cast<std::uint8_t>(m.name.size()));
  std::memcpy(out.data() + hs_off_name, m.name.data(), m.name.size());
  std::memcpy(out.data() + hs_off_nonce, m.n.data(), nonce_bytes);
  std::memcpy(out.data() + hs_off_mac, m.m.data(), mac_bytes);
  return out;
}

handshake_message decode_handshake_message(std::span<const std::byte> bytes) {
  if (bytes.size() != handshake_message_size)
    bad("size " + std::to_string(bytes.size()) + " (expected " +
        std::to_string(handshake_message_size) + ")");
  auto u8 = [&](std::size_t off) { return std::to_integer<std::uint8_t>(bytes[off]); };
  std::uint32_t magic = 0;
  for (std::size_t i = 0; i < 4; ++i)
    magic |= static_cast<std::uint32_t>(u8(hs_off_magic + i)) << (8 * i);
  if (magic != auth_magic)
    bad("bad magic (not a troupe data-plane peer?)");
  auto version = static_cast<std::uint16_t>(u8(hs_off_version) | u8(hs_off_version + 1) << 8);
  if (version != auth_version)
    bad("unsupported version " + std::to_string(version) + " (expected " +
        std::to_string(auth_version) + ")");
  handshake_message m;
  auto type = u8(hs_off_type);
  if (type < 1 || type > 5)
    bad("unknown message type " + std::to_string(type));
  m.type = static_cast<handshake_type>(type);
  auto mode = u8(hs_off_mode);
  if (mode > 1)
    bad("unknown mode " + std::to_string(mode));
  m.mode = static_cast<auth_mode>(mode);
  auto reason = u8(hs_off_reason);
  if (reason > static_cast<std::uint8_t>(reject_reason::bad_message))
    bad("unknown reject reason " + std::to_string(reason));
  m.reason = static_cast<reject_reason>(reason);
  if ((m.type == handshake_type::reject) != (m.reason != reject_reason::none))
    bad("reject reason present on a non-reject message or missing on a reject");
  if (u8(hs_off_reserved) != 0 || u8(hs_off_reserved + 1) != 0)
    bad("reserved bytes are not zero");
  std::size_t name_len = u8(hs_off_name_len);
  if (name_len > max_party_name)
    bad("name length " + std::to_string(name_len) + " exceeds " + std::to_string(max_party_name));
  for (std::size_t i = name_len; i < max_party_name; ++i)
    if (u8(hs_off_name + i) != 0)
      bad("name padding is not zero");
  m.name.assign(reinterpret_cast<const char*>(bytes.data() + hs_off_name), name_len);
  if (carries_name(m.type) ? !valid_party_name(m.name) : !m.name.empty())
    bad("bad party name");
  std::memcpy(m.n.data(), bytes.data() + hs_off_nonce, nonce_bytes);
  std::memcpy(m.m.data(), bytes.data() + hs_off_mac, mac_bytes);
  return m;
}

mac compute_mac(const cluster_key& key, char role, std::string_view client_name,
                std::string_view server_name, const nonce& client_nonce,
                const nonce& server_nonce) {
  // Unambiguous encoding: label, role, version, length-prefixed names, nonces.
  std::string input{mac_label};
  input.push_back(role);
  input.push_back(static_cast<char>(auth_version & 0xff));
  input.push_back(static_cast<char>(auth_version >> 8));
  input.push_back(static_cast<char>(client_name.size()));
  input.append(client_name);
  input.push_back(static_cast<char>(server_name.size()));
  input.append(server_name);
  input.append(reinterpret_cast<const char*>(client_nonce.data()), client_nonce.size());
  input.append(reinterpret_cast<const char*>(server_nonce.data()), server_nonce.size());
  mac out{};
  unsigned int len = 0;
  if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
           reinterpret_cast<const unsigned char*>(input.data()), input.size(), out.data(),
           &len) == nullptr ||
      len != out.size())
    throw std::runtime_error("OpenSSL HMAC-SHA256 failed");
  return out;
}

handshake::handshake(const cluster_key& key, std::string self_name, std::string expected_peer,
                     auth_mode mode, bool is_server, bool plain_allowed)
    : key_(key), self_name_(std::move(self_name)), expected_peer_(std::move(expected_peer)),
      mode_(mode), is_server_(is_server), plain_allowed_(plain_allowed) {
  if (!valid_party_name(self_name_))
    throw std::invalid_argument("handshake: invalid own name '" + self_name_ + "'");
  random_bytes(own_nonce_.data(), own_nonce_.size());
}

handshake handshake::client(const cluster_key& key, std::string self_name,
                            std::string expected_server, auth_mode mode) {
  return handshake{key, std::move(self_name), std::move(expected_server), mode, false, false};
}

handshake handshake::server(const cluster_key& key, std::string self_name, auth_mode mode,
                            bool plain_allowed) {
  return handshake{key, std::move(self_name), {}, mode, true, plain_allowed};
}

std::optional<handshake_bytes> handshake::start() {
  if (is_server_ || step_ != 0)
    return std::nullopt;
  step_ = 1;
  handshake_message m;
  m.type = handshake_type::hello;
  m.mode = mode_;
  m.name = self_name_;
  if (mode_ == auth_mode::hmac)
    m.n = own_nonce_;
  return encode_handshake_message(m);
}

std::optional<handshake_bytes> handshake::fail(std::string why, reject_reason send_reason) {
  state_ = state::failed;
  error_ = std::move(why);
  if (send_reason == reject_reason::none)
    return std::nullopt;
  handshake_message r;
  r.type = handshake_type::reject;
  r.mode = mode_;
  r.reason = send_reason;
  return encode_handshake_message(r);
}

std::optional<handshake_bytes> handshake::on_message(std::span<const std::byte> bytes) {
  if (state_ != state::in_progress)
    return std::nullopt;
  handshake_message m;
  try {
    m = decode_handshake_message(bytes);
  } catch (const input_error& e) {
    return fail(e.what(), is_server_ ? reject_reason::bad_message : reject_reason::none);
  }
  if (m.type == handshake_type::reject)
    return fail(std::string{"peer refused the connection: "} + std::string{to_string(m.reason)},
                reject_reason::none);
  return is_server_ ? on_server_message(m) : on_client_message(m);
}

std::optional<handshake_bytes> handshake::on_server_message(const handshake_message& m) {
  if (step_ == 0) {
    if (m.type != handshake_type::hello)
      return fail("expected HELLO", reject_reason::bad_message);
    step_ = 1;
    if (m.mode == auth_mode::plain) {
      if (mode_ != auth_mode::plain || !plain_allowed_)
        return fail("plain connection from '" + m.name + "' refused", reject_reason::plain_refused);
      peer_name_ = m.name;
      state_ = state::done;
      handshake_message a;
      a.type = handshake_type::accept;
      a.mode = mode_;
      a.name = self_name_;
      return encode_handshake_message(a);
    }
    if (mode_ != auth_mode::hmac)
      return fail("authenticated HELLO on a plain-mode endpoint", reject_reason::mode_mismatch);
    peer_name_ = m.name;
    peer_nonce_ = m.n;
    handshake_message c;
    c.type = handshake_type::challenge;
    c.mode = mode_;
    c.name = self_name_;
    c.n = own_nonce_;
    c.m = compute_mac(key_, 'S', peer_name_, self_name_, peer_nonce_, own_nonce_);
    return encode_handshake_message(c);
  }
  if (step_ == 1) {
    if (m.type != handshake_type::response || m.mode != auth_mode::hmac)
      return fail("expected RESPONSE", reject_reason::bad_message);
    auto expected = compute_mac(key_, 'C', peer_name_, self_name_, peer_nonce_, own_nonce_);
    if (CRYPTO_memcmp(expected.data(), m.m.data(), mac_bytes) != 0)
      return fail("client '" + peer_name_ +
                      "' failed authentication (wrong cluster key or a "
                      "replayed handshake)",
                  reject_reason::bad_mac);
    step_ = 2;
    state_ = state::done;
    handshake_message a;
    a.type = handshake_type::accept;
    a.mode = mode_;
    a.name = self_name_;
    return encode_handshake_message(a);
  }
  return fail("unexpected message", reject_reason::bad_message);
}

std::optional<handshake_bytes> handshake::on_client_message(const handshake_message& m) {
  auto check_name = [&]() -> bool { return expected_peer_.empty() || m.name == expected_peer_; };
  if (step_ == 1 && mode_ == auth_mode::plain) {
    if (m.type != handshake_type::accept)
      return fail("expected ACCEPT from the server", reject_reason::none);
    if (!check_name())
      return fail("server announced itself as '" + m.name + "', expected '" + expected_peer_ + "'",
                  reject_reason::none);
    peer_name_ = m.name;
    state_ = state::done;
    return std::nullopt;
  }
  if (step_ == 1) {
    if (m.type != handshake_type::challenge || m.mode != auth_mode::hmac)
      return fail("expected CHALLENGE from the server", reject_reason::none);
    if (!check_name())
      return fail("server announced itself as '" + m.name + "', expected '" + expected_peer_ + "'",
                  reject_reason::none);
    peer_nonce_ = m.n;
    auto expected = compute_mac(key_, 'S', self_name_, m.name, own_nonce_, peer_nonce_);
    if (CRYPTO_memcmp(expected.data(), m.m.data(), mac_bytes) != 0)
      return fail("server '" + m.name + "' failed authentication (wrong cluster key?)",
                  reject_reason::none);
    peer_name_ = m.name;
    step_ = 2;
    handshake_message r;
    r.type = handshake_type::response;
    r.mode = mode_;
    r.m = compute_mac(key_, 'C', self_name_, peer_name_, own_nonce_, peer_nonce_);
    return encode_handshake_message(r);
  }
  if (step_ == 2) {
    if (m.type != handshake_type::accept || m.name != peer_name_)
      return fail("expected ACCEPT from the server", reject_reason::none);
    state_ = state::done;
    return std::nullopt;
  }
  return fail("unexpected message", reject_reason::none);
}

} // namespace troupe::runtime::transport
