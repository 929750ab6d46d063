#define BOOST_TEST_DYN_LINK
#define BOOST_TEST_MODULE transport_cluster_spec
#include <boost/test/unit_test.hpp>

#include <map>
#include <string>

#include "runtime/net/cluster_spec.hpp"
#include "runtime/error.hpp"

using namespace troupe::runtime;

namespace {

void expect_error(const std::string& json, const std::string& needle) {
  try {
    cluster_spec::parse(json);
    BOOST_FAIL("accepted: " + json);
  } catch (const input_error& e) {
    BOOST_TEST_INFO("input: " << json << "\nmessage: " << e.what());
    BOOST_TEST(std::string{e.what()}.find(needle) != std::string::npos);
  }
}

env_getter env_of(std::map<std::string, std::string> vars) {
  return [vars](const std::string& k) -> std::optional<std::string> {
    if (auto it = vars.find(k); it != vars.end())
      return it->second;
    return std::nullopt;
  };
}

} // namespace

BOOST_AUTO_TEST_CASE(tf_config_is_accepted) {
  auto spec = cluster_spec::parse(R"({
    "cluster": {"worker": ["w0.example.com:2222", "10.0.0.2:2222"],
                "ps": ["[::1]:2223"], "chief": ["chief:2222"]},
    "task": {"type": "worker", "index": 1}, "environment": "cloud"})");
  BOOST_REQUIRE(spec.world_size() == 4u);
  BOOST_TEST(spec.nodes()[0].name == "chief:0");
  BOOST_TEST(spec.nodes()[1].name == "worker:0");
  BOOST_TEST(spec.nodes()[2].address.host == "10.0.0.2");
  BOOST_TEST(spec.nodes()[3].address.host == "::1");
  BOOST_TEST(spec.nodes()[3].address.port == 2223);
  BOOST_TEST(spec.nodes()[3].address.to_string() == "[::1]:2223");
  BOOST_TEST(spec.nodes()[3].roles.at(0) == "ps");
  BOOST_TEST(*spec.self() == "worker:1");
  BOOST_TEST(*spec.task_type() == "worker");
  BOOST_TEST(spec.task_index() == 1);
  BOOST_TEST(spec.with_role("worker").size() == 2u);
  // The evaluator runs outside "cluster" in TensorFlow.
  auto eval = cluster_spec::parse(R"({"cluster": {"worker": ["a:1"]},
                                      "task": {"type": "evaluator", "index": 0}})");
  BOOST_TEST(!eval.self());
  BOOST_TEST(*eval.task_type() == "evaluator");
}

BOOST_AUTO_TEST_CASE(tf_config_from_the_environment) {
  BOOST_TEST(!cluster_spec::from_tf_config_env(env_of({})));
  auto spec = cluster_spec::from_tf_config_env(
    env_of({{"TF_CONFIG", R"({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 0}})"}}));
  BOOST_REQUIRE(spec);
  BOOST_TEST(spec->world_size() == 2u);
  BOOST_CHECK_THROW(cluster_spec::from_tf_config_env(env_of({{"TF_CONFIG", "{"}})), input_error);
}

BOOST_AUTO_TEST_CASE(bad_tf_configs_are_refused) {
  expect_error("not json", "not valid JSON");
  expect_error("[1]", "expected a JSON object");
  expect_error("{}", "expected \"cluster\"");
  expect_error(R"({"cluster": {"gpu": ["a:1"]}})", "unknown job \"gpu\"");
  expect_error(R"({"cluster": {"worker": []}})", "cluster.worker");
  expect_error(R"({"cluster": {"worker": "a:1"}})", "cluster.worker");
  expect_error(R"({"cluster": {"worker": [1]}})", "cluster.worker[0]");
  expect_error(R"({"cluster": {"worker": ["a"]}})", "not host:port");
  expect_error(R"({"cluster": {"worker": ["a:"]}})", "malformed port");
  expect_error(R"({"cluster": {"worker": ["a:x1"]}})", "malformed port");
  expect_error(R"({"cluster": {"worker": ["a:-1"]}})", "malformed port");
  expect_error(R"({"cluster": {"worker": ["a:0"]}})", "out of range");
  expect_error(R"({"cluster": {"worker": ["a:65536"]}})", "out of range");
  expect_error(R"({"cluster": {"worker": [":80"]}})", "malformed host");
  expect_error(R"({"cluster": {"worker": ["a b:80"]}})", "malformed host");
  expect_error(R"({"cluster": {"worker": ["::1:80"]}})", "malformed host");
  expect_error(R"({"cluster": {"worker": ["[::1]80"]}})", "[ipv6]:port");
  expect_error(R"({"cluster": {"worker": ["a:1", "a:1"]}})", "appears twice");
  expect_error(R"({"cluster": {"worker": ["a:1"], "ps": ["a:1"]}})", "cluster.ps[0]");
  expect_error(R"({"cluster": {"chief": ["a:1", "b:1"]}})", "at most one chief");
  expect_error(R"({"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 1}})",
               "task.index");
  expect_error(R"({"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": -1}})",
               "task.index");
  expect_error(R"({"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": "0"}})",
               "task.index");
  expect_error(R"({"cluster": {"worker": ["a:1"]}, "task": {"type": "ps", "index": 0}})",
               "task.type");
  expect_error(R"({"cluster": {"worker": ["a:1"]}, "task": {"type": "boss"}})", "task.type");
  expect_error(R"({"cluster": {"worker": ["a:1"]}, "task": {"index": 0}})", "missing \"type\"");
  expect_error(R"({"cluster": {"worker": ["a:1"]}, "tsak": {}})", "unknown key \"tsak\"");
}

BOOST_AUTO_TEST_CASE(troupe_form_is_accepted) {
  auto spec = cluster_spec::parse(R"({
    "supervisor": "head:7000",
    "nodes": [
      {"name": "n0", "address": "head:7001",
       "devices": [{"kind": "cpu", "cores": 2}, {"kind": "cuda", "index": 0}, {"kind": "cuda", "index": 1}],
       "roles": ["worker", "ps"]},
      {"name": "n1", "address": "10.1.0.7:7001"}],
    "self": "n1"})");
  BOOST_REQUIRE(spec.world_size() == 2u);
  BOOST_TEST(spec.supervisor()->to_string() == "head:7000");
  const auto& n0 = spec.nodes()[0];
  BOOST_REQUIRE(n0.devices.size() == 3u);
  BOOST_TEST((n0.devices[0].kind == device_kind::cpu));
  BOOST_TEST(n0.devices[0].cores == 2);
  BOOST_TEST((n0.devices[2].kind == device_kind::cuda));
  BOOST_TEST(n0.devices[2].index == 1);
  BOOST_TEST(n0.roles.size() == 2u);
  const auto* n1 = spec.find("n1");
  BOOST_REQUIRE(n1);
  BOOST_TEST(n1->devices.size() == 1u); // default: one cpu
  BOOST_TEST(n1->roles.at(0) == "worker");
  BOOST_TEST(*spec.self() == "n1");
  BOOST_TEST(spec.with_role("ps").size() == 1u);
}

BOOST_AUTO_TEST_CASE(bad_troupe_forms_are_refused) {
  expect_error(R"({"nodes": []})", "nodes: expected a non-empty array");
  expect_error(R"({"nodes": [1]})", "nodes[0]: expected an object");
  expect_error(R"({"nodes": [{"address": "a:1"}]})", "missing \"name\"");
  expect_error(R"({"nodes": [{"name": "n", "address": "a:1", "extra": 1}]})",
               "unknown key \"extra\"");
  expect_error(R"({"nodes": [{"name": "", "address": "a:1"}]})", "nodes[0].name");
  expect_error(R"({"nodes": [{"name": "a b", "address": "a:1"}]})", "nodes[0].name");
  expect_error(R"({"nodes": [{"name": "n", "address": "a:1"}, {"name": "n", "address": "a:2"}]})",
               "nodes[1].name");
  expect_error(R"({"nodes": [{"name": "n", "address": "a:1"}, {"name": "m", "address": "a:1"}]})",
               "nodes[1].address");
  expect_error(R"({"supervisor": "a:1", "nodes": [{"name": "n", "address": "a:1"}]})",
               "nodes[0].address");
  expect_error(R"({"supervisor": "a", "nodes": [{"name": "n", "address": "a:1"}]})",
               "supervisor");
  expect_error(R"({"nodes": [{"name": "n", "address": "a:99999"}]})", "nodes[0].address");
  expect_error(R"({"nodes": [{"name": "n", "address": "a:1", "devices": []}]})",
               "nodes[0].devices");
  expect_error(R"({"nodes": [{"name": "n", "address": "a:1", "devices": [{"kind": "tpu"}]}]})",
               "nodes[0].devices[0].kind");
  expect_error(R"({"nodes": [{"name": "n", "address": "a:1", "devices": [{"kind": "cpu", "cores": 0}]}]})",
               "nodes[0].devices[0].cores");
  expect_error(R"({"nodes": [{"name": "n", "address": "a:1", "devices": [{"kind": "cuda"}]}]})",
               "missing \"index\"");
  expect_error(R"({"nodes": [{"name": "n", "address": "a:1", "devices": [{"kind": "cuda", "index": -1}]}]})",
               "nodes[0].devices[0].index");
  expect_error(R"({"nodes": [{"name": "n", "address": "a:1", "devices": [{"kind": "cuda", "index": 0}, {"kind": "cuda", "index": 0}]}]})",
               "appears twice");
  expect_error(R"({"nodes": [{"name": "n", "address": "a:1", "devices": [{"kind": "cpu", "index": 0}]}]})",
               "unknown key \"index\"");
  expect_error(R"({"nodes": [{"name": "n", "address": "a:1", "roles": ["boss"]}]})",
               "nodes[0].roles[0]");
  expect_error(R"({"nodes": [{"name": "n", "address": "a:1", "roles": ["ps", "ps"]}]})",
               "nodes[0].roles[1]");
  expect_error(R"({"nodes": [{"name": "n", "address": "a:1"}], "self": "m"})", "self");
}

BOOST_AUTO_TEST_CASE(launcher_rank_from_the_environment) {
  BOOST_TEST(!launcher_rank(env_of({})));
  auto mpi = launcher_rank(env_of({{"OMPI_COMM_WORLD_RANK", "3"}, {"OMPI_COMM_WORLD_SIZE", "4"},
                                   {"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "1"}}));
  BOOST_REQUIRE(mpi);
  BOOST_TEST(mpi->rank == 3);
  BOOST_TEST(mpi->size == 4);
  BOOST_TEST(mpi->source == "mpirun");
  auto slurm = launcher_rank(env_of({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "2"}}));
  BOOST_REQUIRE(slurm);
  BOOST_TEST(slurm->source == "slurm");
  BOOST_TEST(slurm->size == 2);
  auto pmi = launcher_rank(env_of({{"PMI_RANK", "1"}, {"PMI_SIZE", "2"}}));
  BOOST_REQUIRE(pmi);
  BOOST_TEST(pmi->source == "pmi");
  for (auto bad : std::vector<std::map<std::string, std::string>>{
         {{"OMPI_COMM_WORLD_RANK", "1"}},
         {{"SLURM_NTASKS", "2"}},
         {{"SLURM_PROCID", "x"}, {"SLURM_NTASKS", "2"}},
         {{"SLURM_PROCID", "-1"}, {"SLURM_NTASKS", "2"}},
         {{"SLURM_PROCID", "+1"}, {"SLURM_NTASKS", "2"}},
         {{"SLURM_PROCID", " 1"}, {"SLURM_NTASKS", "2"}},
         {{"SLURM_PROCID", "2"}, {"SLURM_NTASKS", "2"}},
         {{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "0"}},
         {{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "99999999999"}},
         {{"PMI_RANK", ""}, {"PMI_SIZE", "1"}}})
    BOOST_CHECK_THROW(launcher_rank(env_of(bad)), input_error);
}
