#define BOOST_TEST_DYN_LINK
#define BOOST_TEST_MODULE cluster_status_server
#include <boost/test/unit_test.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <limits>
#include <random>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "runtime/error.hpp"
#include "runtime/telemetry/prometheus.hpp"
#include "runtime/telemetry/status_server.hpp"
#include "../loopback.hpp"

using namespace troupe::runtime;
using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

namespace {

/// Reads until the server closes (or `limit` passes).
std::string read_all(int fd, std::chrono::milliseconds limit = 3000ms) {
  std::string out;
  auto deadline = clock_type::now() + limit;
  while (clock_type::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock_type::now());
    if (::poll(&p, 1, static_cast<int>(std::max<long>(1, left.count()))) <= 0)
      break;
    char buf[4096];
    auto n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0)
      break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  return out;
}

/// Sends raw bytes, returns the whole reply.
std::string send_raw(std::uint16_t port, const std::string& request) {
  int fd = troupe::test::loopback_connect(port);
  std::size_t done = 0;
  while (done < request.size()) {
    auto n = ::send(fd, request.data() + done, request.size() - done, MSG_NOSIGNAL);
    if (n <= 0)
      break; // the server may close early on bad input
    done += static_cast<std::size_t>(n);
  }
  auto reply = read_all(fd);
  ::close(fd);
  return reply;
}

struct reply {
  int status = 0;
  std::string headers;
  std::string body;
};

reply parse(const std::string& raw) {
  reply r;
  auto end = raw.find("\r\n\r\n");
  if (raw.rfind("HTTP/1.1 ", 0) != 0 || end == std::string::npos)
    return r;
  r.status = std::stoi(raw.substr(9, 3));
  r.headers = raw.substr(0, end);
  r.body = raw.substr(end + 4);
  return r;
}

reply get(std::uint16_t port, const std::string& method, const std::string& target) {
  return parse(send_raw(port, method + " " + target + " HTTP/1.1\r\nHost: localhost\r\n\r\n"));
}

bool has_header(const reply& r, const std::string& line) {
  return r.headers.find("\r\n" + line + "\r\n") != std::string::npos ||
         (r.headers.size() >= line.size() &&
          r.headers.compare(r.headers.size() - line.size(), line.size(), line) == 0);
}

std::string metrics_text() {
  prometheus_builder b;
  b.family("troupe_messages_total", prometheus_builder::metric_type::counter,
           "Messages sent per actor.\nSecond line with a \\ backslash.");
  b.sample({{"actor", "shard\"0\"\n"}, {"node", "n\\1"}}, 42);
  b.sample({{"actor", "trainer"}, {"node", "n1"}}, 7);
  b.family("troupe step-time seconds", prometheus_builder::metric_type::gauge, "Step time.");
  b.sample({}, 0.0125);
  b.family("troupe_loss", prometheus_builder::metric_type::gauge, "Loss.");
  b.sample({{"0bad label", "x"}}, std::numeric_limits<double>::quiet_NaN());
  b.family("troupe_latency", prometheus_builder::metric_type::summary, "Latency.");
  b.sample({}, 3.5, "_sum");
  b.sample({}, 2, "_count");
  b.sample({{"le", "+Inf"}}, std::numeric_limits<double>::infinity());
  return b.take();
}

status_server::handler_map handlers() {
  return {
      {"GET /status",
       [] {
         return status_server::response{"application/json", R"({"nodes":[],"devices":2})"};
       }},
      {"GET /metrics",
       [] {
         return status_server::response{prometheus_builder::content_type, metrics_text()};
       }},
      {"GET /boom",
       []() -> status_server::response { throw std::runtime_error("handler failed"); }},
  };
}

} // namespace

BOOST_AUTO_TEST_CASE(status_returns_callback_body) {
  status_server s{"127.0.0.1", 0, handlers()};
  BOOST_REQUIRE_NE(s.port(), 0);
  auto r = get(s.port(), "GET", "/status");
  BOOST_CHECK_EQUAL(r.status, 200);
  BOOST_CHECK(has_header(r, "Content-Type: application/json"));
  BOOST_CHECK_EQUAL(r.body, R"({"nodes":[],"devices":2})");
  // Query strings are ignored.
  BOOST_CHECK_EQUAL(get(s.port(), "GET", "/status?verbose=1").status, 200);
}

BOOST_AUTO_TEST_CASE(metrics_are_well_formed) {
  status_server s{"127.0.0.1", 0, handlers()};
  auto r = get(s.port(), "GET", "/metrics");
  BOOST_CHECK_EQUAL(r.status, 200);
  BOOST_CHECK(has_header(r, "Content-Type: text/plain; version=0.0.4; charset=utf-8"));
  BOOST_REQUIRE(!r.body.empty() && r.body.back() == '\n');
  const std::regex help{R"(# HELP [a-zA-Z_:][a-zA-Z0-9_:]* ([^\\\n]|\\[\\n])*)"};
  const std::regex type{
      R"(# TYPE [a-zA-Z_:][a-zA-Z0-9_:]* (counter|gauge|summary|histogram|untyped))"};
  const std::regex sample{
      R"([a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\[\\"n])*"(,[a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\[\\"n])*")*\})? (NaN|[+-]Inf|-?[0-9.]+(e[+-]?[0-9]+)?))"};
  std::istringstream in{r.body};
  std::string line;
  int samples = 0;
  while (std::getline(in, line)) {
    bool ok = std::regex_match(line, help) || std::regex_match(line, type) ||
              (std::regex_match(line, sample) && ++samples > 0);
    BOOST_CHECK_MESSAGE(ok, "malformed line: " << line);
  }
  BOOST_CHECK_EQUAL(samples, 7);
  BOOST_CHECK(r.body.find(R"(troupe_messages_total{actor="shard\"0\"\n",node="n\\1"} 42)") !=
              std::string::npos);
  BOOST_CHECK(r.body.find("# HELP troupe_step_time_seconds Step time.") != std::string::npos);
  BOOST_CHECK(r.body.find("troupe_loss{_0bad_label=\"x\"} NaN") != std::string::npos);
  BOOST_CHECK(r.body.find("troupe_latency_sum 3.5\ntroupe_latency_count 2\n") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(prometheus_builder_rules) {
  using pb = prometheus_builder;
  BOOST_CHECK_EQUAL(pb::metric_name("a.b-c:d"), "a_b_c:d");
  BOOST_CHECK_EQUAL(pb::metric_name("9lives"), "_9lives");
  BOOST_CHECK_EQUAL(pb::label_name("a:b"), "a_b");
  BOOST_CHECK_EQUAL(pb::label_name(""), "_");
  BOOST_CHECK_EQUAL(pb::escape_label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
  BOOST_CHECK_EQUAL(pb::escape_help("a\\b\nc\""), "a\\\\b\\nc\"");
  BOOST_CHECK_EQUAL(pb::format_value(1.5), "1.5");
  BOOST_CHECK_EQUAL(pb::format_value(-std::numeric_limits<double>::infinity()), "-Inf");
  BOOST_CHECK_EQUAL(pb::format_value(1e21), "1e+21");
  BOOST_CHECK_EQUAL(std::stod(pb::format_value(0.1 + 0.2)), 0.1 + 0.2);
  pb b;
  BOOST_CHECK_THROW(b.sample({}, 1), std::logic_error);
  b.family("x", pb::metric_type::counter, "x");
  BOOST_CHECK_THROW(b.family("x", pb::metric_type::gauge, "again"), std::logic_error);
}

BOOST_AUTO_TEST_CASE(unknown_paths_and_methods) {
  status_server s{"127.0.0.1", 0, handlers()};
  BOOST_CHECK_EQUAL(get(s.port(), "GET", "/nope").status, 404);
  auto post = get(s.port(), "POST", "/status");
  BOOST_CHECK_EQUAL(post.status, 405);
  BOOST_CHECK(has_header(post, "Allow: GET"));
  BOOST_CHECK_EQUAL(get(s.port(), "DELETE", "/elsewhere").status, 405);
  BOOST_CHECK_EQUAL(get(s.port(), "GET", "/boom").status, 500);
  // Bodies are refused.
  auto with_body = parse(
      send_raw(s.port(), "GET /status HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"));
  BOOST_CHECK_EQUAL(with_body.status, 413);
  BOOST_CHECK_EQUAL(get(s.port(), "GET", "/status").status, 200);
}

BOOST_AUTO_TEST_CASE(oversized_header_and_garbage_are_rejected) {
  status_server s{"127.0.0.1", 0, handlers()};
  std::string big =
      "GET /status HTTP/1.1\r\nHost: x\r\nX-Pad: " + std::string(20000, 'a') + "\r\n\r\n";
  auto r = parse(send_raw(s.port(), big));
  BOOST_CHECK_EQUAL(r.status, 431);
  std::mt19937 gen{7};
  for (int i = 0; i < 50; ++i) {
    std::string junk(static_cast<std::size_t>(1 + gen() % 3000), '\0');
    for (auto& c : junk)
      c = static_cast<char>(gen());
    if (i % 5 == 0)
      junk = "GET /" + junk; // starts like HTTP
    auto reply = send_raw(s.port(), junk + "\r\n\r\n");
    auto p = parse(reply);
    BOOST_CHECK_MESSAGE(reply.empty() || p.status == 400 || p.status == 404 || p.status == 405 ||
                            p.status == 413 || p.status == 431,
                        "unexpected reply to garbage: " << reply.substr(0, 40));
  }
  BOOST_CHECK_EQUAL(get(s.port(), "GET", "/status").status, 200);
}

BOOST_AUTO_TEST_CASE(slow_client_is_cut_off) {
  status_server::options o;
  o.timeout = 300ms;
  status_server s{o, handlers()};
  int fd = troupe::test::loopback_connect(s.port());
  ::send(fd, "GET /sta", 8, MSG_NOSIGNAL);
  auto t0 = clock_type::now();
  auto got = read_all(fd, 3000ms);
  auto waited = std::chrono::duration<double, std::milli>(clock_type::now() - t0).count();
  ::close(fd);
  BOOST_TEST_MESSAGE("slow client cut off after " << waited << " ms");
  BOOST_CHECK_LT(waited, 2000.0);
  BOOST_CHECK_EQUAL(get(s.port(), "GET", "/status").status, 200);
}

BOOST_AUTO_TEST_CASE(connection_cap_and_clean_stop) {
  status_server::options o;
  o.max_connections = 4;
  o.timeout = 2000ms;
  auto s = std::make_unique<status_server>(o, handlers());
  std::vector<int> idle;
  for (int i = 0; i < 8; ++i)
    idle.push_back(troupe::test::loopback_connect(s->port()));
  std::this_thread::sleep_for(100ms);
  // Connections beyond the cap were closed at once.
  int closed = 0;
  for (int fd : idle) {
    pollfd p{fd, POLLIN, 0};
    char c;
    if (::poll(&p, 1, 0) == 1 && ::recv(fd, &c, 1, MSG_DONTWAIT) == 0)
      ++closed;
  }
  BOOST_CHECK_GE(closed, 4);
  // Destruction with idle connections open returns promptly.
  auto t0 = clock_type::now();
  s.reset();
  BOOST_CHECK_LT(std::chrono::duration<double>(clock_type::now() - t0).count(), 1.0);
  for (int fd : idle)
    ::close(fd);
}

BOOST_AUTO_TEST_CASE(bad_addresses_throw) {
  BOOST_CHECK_THROW((status_server{"not-an-ip", 0, handlers()}), input_error);
  status_server a{"127.0.0.1", 0, handlers()};
  BOOST_CHECK_THROW((status_server{"127.0.0.1", a.port(), handlers()}), input_error);
}
