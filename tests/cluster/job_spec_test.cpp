#define BOOST_TEST_DYN_LINK
#define BOOST_TEST_MODULE cluster_job_spec
#include <boost/test/unit_test.hpp>

// A job's plan and options turned into what its nodes spawn (job_spec.hpp):
// the orders, their labels, slots and configs, without any actor.

#include <chrono>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/scoped_actor.hpp>

#include "actors/cluster/actor_registry.hpp"
#include "actors/cluster/job_spec.hpp"
#include "actors/cluster/node_agent.hpp"
#include "actors/cluster/node_data.hpp"
#include "actors/collectives/collective_group.hpp"
#include "actors/pipeline/device_actor.hpp"
#include "actors/pipeline/layer_shard.hpp"
#include "actors/plan/plan.hpp"
#include "actors/protocol/system_config.hpp"
#include "runtime/error.hpp"
#include "runtime/net/caf_error.hpp"

using namespace troupe;
using actors::spawn_role;

namespace {

std::vector<actors::device_slot> devices(int nodes) {
  std::vector<actors::device_slot> r;
  for (int i = 0; i < nodes; ++i)
    r.push_back({"cpu:0", "node-" + std::to_string(i), runtime::device::cpu(), 1, 0});
  return r;
}

std::vector<actors::spawn_order> of_role(const std::vector<actors::spawn_order>& orders,
                                         spawn_role role) {
  std::vector<actors::spawn_order> r;
  for (const auto& o : orders)
    if (o.role == role)
      r.push_back(o);
  return r;
}

} // namespace

BOOST_AUTO_TEST_CASE(a_2x2_pipeline_of_replicas_spawns_a_shard_and_a_dp_rank_per_slot) {
  actors::train_options o;
  o.model = "mlp";
  o.stages = 2;
  o.dp = 2;
  o.fault = "stage=1,step=3,replica=1";
  auto p = actors::make_plan(o, devices(4));
  auto orders = actors::job_spawns(p, o);
  BOOST_TEST(orders.size() == 4u + 4u + 4u);
  BOOST_TEST(actors::count_role(orders, spawn_role::device) == 4u);
  BOOST_TEST(actors::count_role(orders, spawn_role::tp_rank) == 0u);
  BOOST_TEST(actors::count_role(orders, spawn_role::ps) == 0u);
  const auto grid = p.grid();
  auto shards = of_role(orders, spawn_role::shard);
  BOOST_TEST_REQUIRE(shards.size() == 4u);
  for (std::size_t j = 0; j < shards.size(); ++j) {
    const auto& s = shards[j];
    BOOST_TEST(s.index == j);
    BOOST_TEST(s.kind == "layer_shard");
    BOOST_TEST_REQUIRE(s.slot.has_value());
    BOOST_TEST((*s.slot == grid.at(j)));
    const auto& d = p.devices[p.stages[j].device];
    BOOST_TEST(s.node == d.node);
    BOOST_TEST(s.label == "layer_shard " + grid.name(*s.slot) + " on " + d.node + "/cpu:0");
    auto c = actors::shard_config_from_json(s.config);
    BOOST_TEST(c.stage == s.slot->stage);
    BOOST_TEST(c.replica == s.slot->replica);
    BOOST_TEST(c.stages == 2);
    BOOST_TEST(c.replicas == 2);
    // Only the named slot carries the injected fault.
    BOOST_TEST((c.fault_step == 3) == (s.slot->stage == 1 && s.slot->replica == 1));
  }
  BOOST_TEST(shards[3].label.rfind("layer_shard replica 1 stage 1 on ", 0) == 0);
  // Stage k of every replica is one all-reduce group, contiguous by index.
  auto ranks = of_role(orders, spawn_role::dp_rank);
  BOOST_TEST_REQUIRE(ranks.size() == 4u);
  for (const auto& r : ranks) {
    BOOST_TEST(r.kind == "collective");
    BOOST_TEST(r.index == static_cast<std::size_t>(r.slot->stage * 2 + r.slot->replica));
    auto g = actors::collective_config_from_json(r.config);
    BOOST_TEST(g.rank == r.slot->replica);
    BOOST_TEST(g.size == 2);
    BOOST_TEST(r.label.rfind("collective rank " + std::to_string(r.slot->replica) + " of " +
                                 grid.name(*r.slot) + " on ",
                             0) == 0);
  }
}

BOOST_AUTO_TEST_CASE(pin_cores_gives_a_nodes_devices_consecutive_cores_of_their_own) {
  // Node a: cpu:0 with 2 threads, cpu:1 with 1; node b: cpu:0 with 1.
  std::vector<actors::device_slot> ds{{"cpu:0", "a", runtime::device::cpu(), 2, 0},
                                      {"cpu:1", "a", runtime::device::cpu(), 1, 0},
                                      {"cpu:0", "b", runtime::device::cpu(), 1, 0}};
  actors::train_options o;
  o.model = "mlp";
  o.dp = 3;
  auto p = actors::make_plan(o, ds);
  BOOST_TEST_REQUIRE(p.devices.size() == 3u);
  for (const auto& d : of_role(actors::job_spawns(p, o), spawn_role::device))
    BOOST_TEST(actors::device_cores_from_json(d.config).empty()); // off by default
  o.pin_cores = true;
  std::map<std::string, std::vector<int>> cores;
  for (const auto& d : of_role(actors::job_spawns(p, o), spawn_role::device))
    cores[d.node + "/" + d.config.at("name").get<std::string>()] =
        actors::device_cores_from_json(d.config);
  BOOST_TEST((cores["a/cpu:0"] == std::vector<int>{0, 1}));
  BOOST_TEST((cores["a/cpu:1"] == std::vector<int>{2}));
  BOOST_TEST((cores["b/cpu:0"] == std::vector<int>{0}));
  BOOST_CHECK_THROW(actors::device_cores_from_json(nlohmann::json{{"cores", "x"}}),
                    runtime::input_error);
}

BOOST_AUTO_TEST_CASE(every_device_gets_the_jobs_gemm_library) {
  std::vector<actors::device_slot> ds{{"cpu:0", "a", runtime::device::cpu(), 1, 0},
                                      {"cpu:0", "b", runtime::device::cpu(), 1, 0}};
  actors::train_options o;
  o.model = "mlp";
  o.stages = 2;
  auto p = actors::make_plan(o, ds);
  for (const auto& d : of_role(actors::job_spawns(p, o), spawn_role::device))
    BOOST_TEST(
        (actors::device_config_from_json(d.config).gemm == kernels::cpu::gemm_backend::automatic));
  o.gemm = kernels::cpu::gemm_backend::onednn;
  int devices = 0;
  for (const auto& d : of_role(actors::job_spawns(p, o), spawn_role::device)) {
    BOOST_TEST(
        (actors::device_config_from_json(d.config).gemm == kernels::cpu::gemm_backend::onednn));
    ++devices;
  }
  BOOST_TEST(devices == 2);
  auto bad = actors::to_json(actors::device_config{});
  bad["gemm"] = "mkl";
  BOOST_CHECK_THROW(actors::device_config_from_json(bad), runtime::input_error);
}

BOOST_AUTO_TEST_CASE(tensor_parallel_stages_get_a_tp_rank_beside_each_shard) {
  actors::train_options o;
  o.model = "mlp";
  o.stages = 2;
  o.tp = 2;
  auto p = actors::make_plan(o, devices(4));
  auto orders = actors::job_spawns(p, o);
  auto tp = of_role(orders, spawn_role::tp_rank);
  BOOST_TEST_REQUIRE(tp.size() == 4u);
  BOOST_TEST(actors::count_role(orders, spawn_role::dp_rank) == 0u);
  for (std::size_t j = 0; j < tp.size(); ++j) {
    BOOST_TEST(tp[j].index == j);
    BOOST_TEST((*tp[j].slot == p.stages[j].id()));
    BOOST_TEST(tp[j].label.rfind("tensor-parallel rank of stage " +
                                     std::to_string(p.stages[j].stage) + " tp rank ",
                                 0) == 0);
    BOOST_TEST(actors::collective_config_from_json(tp[j].config).rank == p.stages[j].tp_rank);
  }
}

// Every kind a job asks its nodes for has a factory there (actor_registry),
// for each topology the orders above cover, parameter servers included.
BOOST_AUTO_TEST_CASE(every_kind_a_job_spawns_has_a_node_factory) {
  for (auto [stages, dp, tp, ps] :
       {std::tuple{2, 2, 1, 0}, std::tuple{2, 1, 2, 0}, std::tuple{1, 2, 1, 1}}) {
    actors::train_options o;
    o.model = "mlp";
    o.stages = stages;
    o.dp = dp;
    o.tp = tp;
    o.ps = ps;
    auto p = actors::make_plan(o, devices(stages * dp * tp + ps));
    for (const auto& order : actors::job_spawns(p, o))
      BOOST_TEST(actors::actor_factories().count(order.kind) == 1u, order.kind);
  }
}

// A node asked for a kind it has no factory for refuses, naming the kind and
// the kinds it knows (the if-chain it replaced answered the same way).
BOOST_AUTO_TEST_CASE(a_node_refuses_an_unknown_kind_naming_it) {
  troupe::actors::system_config cfg;
  caf::actor_system sys{cfg};
  auto agent = actors::spawn_node_agent(sys, {});
  caf::scoped_actor self{sys};
  std::string what;
  self->request(agent, std::chrono::seconds(10), actors::spawn_atom::value, std::uint64_t{1},
                std::string{"bogus_kind"}, std::string{"{}"})
      .receive([&](caf::actor&) { what = "spawned"; },
               [&](caf::error& err) { what = troupe::runtime::describe(sys, err); });
  BOOST_TEST(what.find("unknown actor kind 'bogus_kind'") != std::string::npos, what);
  BOOST_TEST(what.find("layer_shard") != std::string::npos, what); // names the known kinds
  self->send_exit(agent, caf::exit_reason::user_shutdown);
}

// --data-from nodes: each replica's loader goes to the node of its first
// stage, with the shares, replica and batch a loader in the supervisor would
// have; the test set's loader goes to replica 0's node.
BOOST_AUTO_TEST_CASE(each_replicas_loader_is_spawned_on_its_first_stages_node) {
  actors::train_options o;
  o.model = "mlp";
  o.stages = 2;
  o.dp = 2;
  o.batch = 96;
  o.seed = 7;
  auto p = actors::make_plan(o, devices(4));
  const nlohmann::json spec{{"options", actors::to_json(o)}, {"model", p.model.to_json()}};
  const nlohmann::json data{{"digest", "0123"}, {"evaluate", true}, {"test_samples", 2500}};
  auto orders = actors::loader_spawns(p, spec, data);
  BOOST_TEST_REQUIRE(orders.size() == 3u);
  for (int r = 0; r < 2; ++r) {
    const auto& o_r = orders[static_cast<std::size_t>(r)];
    BOOST_TEST((o_r.role == spawn_role::loader));
    BOOST_TEST(o_r.index == static_cast<std::size_t>(r));
    BOOST_TEST(o_r.kind == "data_loader");
    BOOST_TEST(o_r.node == p.devices[p.slot(r, 0, 0).device].node);
    BOOST_TEST(o_r.config.at("split") == "train");
    BOOST_TEST(o_r.config.at("digest") == "0123");
    auto c = actors::loader_config_from_json(o_r.config.at("loader"));
    BOOST_TEST(c.replica == r);
    BOOST_TEST(c.batch == 96);
    BOOST_TEST(c.seed == 7u);
    BOOST_TEST(c.shuffle);
    BOOST_TEST(c.shares == p.batch_shares);
    BOOST_TEST(c.parts == p.microbatches);
  }
  const auto& test = orders[2];
  BOOST_TEST(test.index == 2u);
  BOOST_TEST(test.node == p.devices[p.slot(0, 0, 0).device].node);
  BOOST_TEST(test.config.at("split") == "test");
  auto c = actors::loader_config_from_json(test.config.at("loader"));
  BOOST_TEST(c.batch == 1000);
  BOOST_TEST(!c.shuffle);
  BOOST_TEST(actors::actor_factories().count(test.kind) == 1u);
}

// A node's path map: FROM is replaced only as whole leading components.
BOOST_AUTO_TEST_CASE(a_nodes_data_paths_map_whole_leading_components) {
  const actors::data_path_map map{{"/data", "/mnt/nfs/data"}, {"/x/y/", "/z"}};
  BOOST_TEST(actors::map_data_path(map, "/data/mnist") == "/mnt/nfs/data/mnist");
  BOOST_TEST(actors::map_data_path(map, "/data") == "/mnt/nfs/data");
  BOOST_TEST(actors::map_data_path(map, "/database/mnist") == "/database/mnist");
  BOOST_TEST(actors::map_data_path(map, "/x/y/t.csv") == "/z/t.csv");
  BOOST_TEST(actors::map_data_path(map, "/elsewhere/t.csv") == "/elsewhere/t.csv");
  BOOST_TEST(actors::parse_data_path("/a=/b").to == "/b");
  BOOST_CHECK_THROW(actors::parse_data_path("/a"), runtime::input_error);
  BOOST_CHECK_THROW(actors::parse_data_path("=/b"), runtime::input_error);
}
