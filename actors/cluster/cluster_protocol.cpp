#include "actors/cluster/cluster_protocol.hpp"

#include <caf/scoped_actor.hpp>

#include "actors/protocol/system_config.hpp"
#include "runtime/error.hpp"
#include "runtime/net/caf_error.hpp"
#include "runtime/net/security/node_identity.hpp"

namespace troupe::actors {

std::vector<device_config> parse_device_list(const std::string& text) {
  std::vector<device_config> r;
  std::size_t begin = 0;
  auto bad = [&](const std::string& item, const std::string& why) {
    return runtime::input_error("--devices: '" + item + "': " + why +
                                " (expected cpu:N or cpu:NxT, comma-separated)");
  };
  auto number = [&](const std::string& item, const std::string& digits) {
    if (digits.empty() || digits.size() > 4 ||
        digits.find_first_not_of("0123456789") != std::string::npos)
      throw bad(item, "'" + digits + "' is not a count");
    int v = std::stoi(digits);
    if (v < 1 || v > 1024)
      throw bad(item, "count " + digits + " outside 1..1024");
    return v;
  };
  while (begin <= text.size()) {
    auto end = text.find(',', begin);
    if (end == std::string::npos)
      end = text.size();
    auto item = text.substr(begin, end - begin);
    if (item.rfind("cpu:", 0) != 0)
      throw bad(item, "only CPU devices can be offered in this version");
    auto spec = item.substr(4);
    auto x = spec.find('x');
    int count = number(item, spec.substr(0, x));
    int threads = x == std::string::npos ? 1 : number(item, spec.substr(x + 1));
    for (int i = 0; i < count; ++i) {
      device_config d;
      d.name = "cpu:" + std::to_string(r.size());
      d.threads = threads;
      r.push_back(d);
    }
    if (r.size() > 1024)
      throw bad(item, "more than 1024 devices");
    begin = end + 1;
  }
  return r;
}

nlohmann::json to_json(const node_description& d) {
  nlohmann::json devices = nlohmann::json::array();
  for (std::size_t i = 0; i < d.devices.size(); ++i) {
    auto j = to_json(d.devices[i]);
    j["gflops"] = i < d.gflops.size() ? d.gflops[i] : 0.0;
    devices.push_back(j);
  }
  return {{"name", d.name},
          {"host", d.host},
          {"pid", d.pid},
          {"cores", d.cores},
          {"memory_bytes", d.memory_bytes},
          {"devices", devices}};
}

node_description node_description_from_json(const nlohmann::json& j) {
  try {
    node_description d;
    d.name = j.at("name").get<std::string>();
    d.host = j.at("host").get<std::string>();
    d.pid = j.at("pid").get<long>();
    d.cores = j.at("cores").get<unsigned>();
    d.memory_bytes = j.at("memory_bytes").get<std::uint64_t>();
    const auto& devices = j.at("devices");
    if (!devices.is_array() || devices.empty() || devices.size() > 1024)
      throw runtime::input_error("node description: 1..1024 devices expected");
    for (const auto& dj : devices) {
      d.devices.push_back(device_config_from_json(dj));
      d.gflops.push_back(dj.value("gflops", 0.0));
    }
    return d;
  } catch (const nlohmann::json::exception& e) {
    throw runtime::input_error(std::string{"node description: "} + e.what());
  }
}

namespace {

/// A refusal from the supervisor is the node's bad input (wrong build, wrong
/// certificate, duplicate name); no answer at all is a failure.
[[noreturn]] void rethrow(caf::actor_system& sys, const caf::error& err, const char* what) {
  auto text = std::string{what} + ": " +
              (err == caf::sec::request_timeout
                   ? "the supervisor did not answer in time (is it overloaded or stopped?)"
                   : runtime::describe(sys, err));
  if (err.category() == caf::atom("system") &&
      err.code() == static_cast<std::uint8_t>(caf::sec::invalid_argument))
    throw runtime::input_error(text);
  throw std::runtime_error(text);
}

} // namespace

welcome join_cluster(caf::actor_system& sys, const caf::actor& supervisor,
                     const node_description& self, const runtime::tls_files* tls,
                     std::chrono::milliseconds timeout) {
  caf::scoped_actor me{sys};
  std::string challenge_text;
  me->request(supervisor, timeout, hello_atom::value, actors::protocol_version,
              actors::message_types_hash(), self.name)
      .receive([&](std::string& c) { challenge_text = std::move(c); },
               [&](caf::error& err) { rethrow(sys, err, "join refused"); });
  auto j = to_json(self);
  try {
    auto challenge = nlohmann::json::parse(challenge_text);
    if (tls) {
      auto message =
          runtime::join_proof_message(challenge.at("nonce").get<std::string>(), self.name,
                                      challenge.at("supervisor").get<std::string>());
      j["certificate"] = runtime::read_certificate_pem(tls->certificate);
      j["signature"] = runtime::sign_message(*tls, message);
    }
    j["nonce"] = challenge.at("nonce").get<std::string>();
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(std::string{"join: bad challenge from the supervisor: "} + e.what());
  }
  welcome w;
  me->request(supervisor, timeout, join_atom::value, j.dump())
      .receive(
          [&](std::string& text) {
            try {
              auto wj = nlohmann::json::parse(text);
              w.key = runtime::transport::key_from_hex(wj.at("key").get<std::string>(),
                                                       "the welcome's cluster key");
              w.data_name = wj.at("data").at("name").get<std::string>();
              w.data_host = wj.at("data").at("host").get<std::string>();
              w.data_port = wj.at("data").at("port").get<std::uint16_t>();
            } catch (const nlohmann::json::exception& e) {
              throw std::runtime_error(std::string{"join: bad welcome from the supervisor: "} +
                                       e.what());
            }
          },
          [&](caf::error& err) { rethrow(sys, err, "join refused"); });
  return w;
}

void announce_ready(caf::actor_system& sys, const caf::actor& supervisor, const std::string& name,
                    const caf::actor& agent, const std::string& data_host, std::uint16_t data_port,
                    const caf::actor& courier_endpoint, std::chrono::milliseconds timeout) {
  caf::scoped_actor me{sys};
  me->request(supervisor, timeout, ready_atom::value, name, agent, data_host, data_port,
              courier_endpoint)
      .receive([](bool) {}, [&](caf::error& err) { rethrow(sys, err, "ready refused"); });
}

} // namespace troupe::actors
