#define BOOST_TEST_DYN_LINK
#define BOOST_TEST_MODULE cluster_speed_probe
#include <boost/test/unit_test.hpp>

// The node side of --balance auto's probe (speed_probe.hpp): it measures the
// job's layers with the job's GEMM library, and a bad request is an error.

#include <memory>
#include <string>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/scoped_actor.hpp>
#include <nlohmann/json.hpp>

#include "actors/cluster/speed_probe.hpp"
#include "actors/protocol/system_config.hpp"
#include "models/zoo.hpp"

using namespace troupe;

namespace {

using hung_promises = std::vector<caf::typed_response_promise<std::string>>;

/// A node agent's probe handler alone. A function with arguments: CAF 0.17
/// binds a null reference for a capturing lambda's empty argument tuple.
caf::behavior probe_agent(caf::event_based_actor* self, std::shared_ptr<hung_promises> hung) {
  return {[self, hung](actors::probe_atom, const std::string& r) -> caf::result<std::string> {
    return actors::answer_probe(self, r, caf::actor{}, nullptr, *hung);
  }};
}

nlohmann::json request(const std::string& gemm) {
  nlohmann::json r{{"model", models::zoo_model("mlp").to_json()},
                   {"microbatch", 8},
                   {"seed", 1},
                   {"min_seconds", 0.01},
                   {"devices", {{{"name", "cpu:0"}, {"threads", 1}}}}};
  if (!gemm.empty())
    r["gemm"] = gemm;
  return r;
}

/// The probe's answer, or "error: ..." .
std::string probe(const nlohmann::json& req) {
  actors::system_config cfg;
  caf::actor_system sys{cfg};
  auto agent = sys.spawn(probe_agent, std::make_shared<hung_promises>());
  caf::scoped_actor self{sys};
  std::string out;
  self->request(agent, caf::infinite, actors::probe_atom::value, req.dump())
      .receive([&](std::string& answer) { out = answer; },
               [&](caf::error& e) { out = "error: " + sys.render(e); });
  self->send_exit(agent, caf::exit_reason::user_shutdown);
  return out;
}

std::string gemm_measured(const std::string& answer) {
  BOOST_TEST_REQUIRE(answer.rfind("error", 0) != 0, answer);
  const auto devices = nlohmann::json::parse(answer).at("devices");
  BOOST_TEST_REQUIRE(devices.size() == 1u);
  BOOST_TEST(devices[0].at("layer_seconds").size() > 0u);
  return devices[0].at("gemm").get<std::string>();
}

} // namespace

BOOST_AUTO_TEST_CASE(the_probe_measures_with_the_jobs_gemm_library) {
  // auto on a one-thread device is oneDNN, as the job's devices will run it.
  BOOST_TEST(gemm_measured(probe(request("auto"))) == "onednn");
  BOOST_TEST(gemm_measured(probe(request(""))) == "onednn"); // a request without it
  BOOST_TEST(gemm_measured(probe(request("openblas"))) == "openblas");
  BOOST_TEST(gemm_measured(probe(request("onednn"))) == "onednn");
}

BOOST_AUTO_TEST_CASE(a_bad_gemm_library_is_an_error_naming_it) {
  const auto answer = probe(request("mkl"));
  BOOST_TEST(answer.rfind("error", 0) == 0, answer);
  BOOST_TEST(answer.find("'mkl'") != std::string::npos, answer);
}
