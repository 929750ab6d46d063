#define BOOST_TEST_DYN_LINK
#define BOOST_TEST_MODULE actors_plan_io
#include <boost/test/unit_test.hpp>

// Plans as JSON (`troupe plan --save`, `troupe train --plan`): exact round
// trips, bad plans named, and the per-device memory estimate.

#include <functional>
#include <string>

#include "actors/plan/plan.hpp"
#include "actors/plan/plan_memory.hpp"
#include "runtime/error.hpp"

using namespace troupe;
using nlohmann::json;

namespace {

actors::train_options options(int stages, int dp = 1, int tp = 1, int ps = 0) {
  actors::train_options o;
  o.model = "mlp";
  o.stages = stages;
  o.dp = dp;
  o.tp = tp;
  o.ps = ps;
  return o;
}

actors::plan make(const actors::train_options& o) {
  return actors::make_plan(o, actors::local_devices(o, 1));
}

/// The options of every topology the tests round-trip.
std::vector<actors::train_options> topologies() {
  std::vector<actors::train_options> r;
  r.push_back(options(1));
  r.push_back(options(1, 2));
  auto pp = options(2);
  pp.microbatches = 4;
  pp.schedule = actors::schedule_kind::one_f_one_b;
  r.push_back(pp);
  r.push_back(options(1, 1, 2));
  auto all = options(2, 2, 2);
  all.microbatches = 2;
  all.batch_shares = {3, 1};
  r.push_back(all);
  auto ps = options(1, 2, 1, 2);
  ps.ps_split_bytes = 4096; // split the big weights across both shards
  ps.ps_mode = actors::ps_mode::ssp;
  ps.staleness = 2;
  r.push_back(ps);
  auto interleaved = options(2);
  interleaved.microbatches = 4;
  interleaved.schedule = actors::schedule_kind::interleaved;
  interleaved.virtual_stages = 2;
  r.push_back(interleaved);
  auto explicit_split = options(2);
  explicit_split.split = {1, 4};
  r.push_back(explicit_split);
  return r;
}

/// plan_from_json(j) must throw an input_error whose message contains `what`.
void expect_bad(const json& j, const std::string& what) {
  try {
    (void)actors::plan_from_json(j);
    BOOST_ERROR("accepted a plan that should fail with '" << what << "'");
  } catch (const runtime::input_error& e) {
    BOOST_TEST(std::string{e.what()}.find(what) != std::string::npos,
               "'" << e.what() << "' does not name '" << what << "'");
  }
}

json edited(const json& j, const std::function<void(json&)>& edit) {
  auto r = j;
  edit(r);
  return r;
}

std::size_t count(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1))
    ++n;
  return n;
}

/// f32 bytes of the zoo mlp (784-1024-512-10): all of it, and what one of two
/// tensor-parallel ranks holds (layers 0 and 2 pair: 0's weight and bias and
/// 2's weight split in half; 2's bias and layer 4 replicated).
constexpr std::uint64_t mlp_bytes = 4 * (784 * 1024 + 1024 + 1024 * 512 + 512 + 512 * 10 + 10);
constexpr std::uint64_t mlp_tp2_bytes =
    4 * ((784 * 1024 + 1024) / 2 + 1024 * 512 / 2 + 512 + 512 * 10 + 10);

} // namespace

BOOST_AUTO_TEST_CASE(plans_round_trip_exactly) {
  for (const auto& o : topologies()) {
    auto p = make(o);
    auto j = actors::to_json(p);
    BOOST_TEST_CONTEXT(j.at("strategy").get<std::string>()
                       << " " << o.stages << "x" << o.dp << "x" << o.tp) {
      auto back = actors::plan_from_json(j);
      BOOST_TEST(actors::to_json(back) == j);
      // Through text too, as `troupe plan --save` and `troupe train --plan` do.
      BOOST_TEST(actors::to_json(actors::plan_from_json(json::parse(j.dump(2)))) == j);
      BOOST_TEST((back.model == p.model));
      BOOST_TEST(back.depth() == p.depth());
      BOOST_TEST(back.replicas == p.replicas);
      BOOST_TEST(back.tp == p.tp);
      BOOST_TEST(back.microbatches == p.microbatches);
      BOOST_TEST((back.schedule == p.schedule));
      BOOST_TEST(back.virtual_stages == p.virtual_stages);
      BOOST_TEST(back.batch_shares == p.batch_shares);
      BOOST_TEST(back.partition == p.partition);
      BOOST_TEST((back.ps_layout == p.ps_layout));
      BOOST_TEST((back.ps_mode == p.ps_mode));
      BOOST_TEST(back.staleness == p.staleness);
      BOOST_TEST_REQUIRE(back.stages.size() == p.stages.size());
      for (std::size_t i = 0; i < p.stages.size(); ++i) {
        BOOST_TEST((back.stages[i].chunks == p.stages[i].chunks));
        BOOST_TEST(back.stages[i].device == p.stages[i].device);
        BOOST_TEST(back.stages[i].tp_rank == p.stages[i].tp_rank);
      }
      BOOST_TEST_REQUIRE(back.ps_shards.size() == p.ps_shards.size());
      for (std::size_t i = 0; i < p.ps_shards.size(); ++i)
        BOOST_TEST(back.ps_shards[i].device == p.ps_shards[i].device);
      // The degrees a saved plan gives the job's options.
      auto adopted = options(1);
      actors::adopt_plan_degrees(adopted, back);
      BOOST_TEST(adopted.stages == o.stages);
      BOOST_TEST(adopted.dp == o.dp);
      BOOST_TEST(adopted.tp == o.tp);
      BOOST_TEST(adopted.ps == o.ps);
    }
  }
}

BOOST_AUTO_TEST_CASE(the_json_names_slots_groups_and_parameter_servers) {
  auto j = actors::to_json(make(options(2, 2, 2)));
  BOOST_TEST(j.at("tp") == 2);
  BOOST_TEST(j.at("depth") == 2);
  const auto& s = j.at("stages").at(7);
  BOOST_TEST(s.at("replica") == 1);
  BOOST_TEST(s.at("stage") == 1);
  BOOST_TEST(s.at("tp_rank") == 1);
  BOOST_TEST(s.at("device") == "cpu:7");
  BOOST_TEST(s.at("node") == "local");
  BOOST_TEST(j.at("ps").is_null());
  BOOST_TEST(j.at("memory").at("devices").size() == 8u);

  auto ps = options(1, 2, 1, 2);
  auto pj = actors::to_json(make(ps));
  BOOST_TEST(pj.at("ps").at("shards").size() == 2u);
  BOOST_TEST(pj.at("ps").at("shards").at(1).at("device") == "cpu:3");
  BOOST_TEST(pj.at("ps").at("mode") == "sync");
  BOOST_TEST(pj.at("ps").at("layout").at("shards") == 2);
}

BOOST_AUTO_TEST_CASE(bad_plans_are_refused_naming_the_problem) {
  auto base = options(2, 2, 2);
  base.split = {2, 3}; // stage 0 [0, 2), stage 1 [2, 5)
  const auto j = actors::to_json(make(base));
  expect_bad(json::array(), "must be a JSON object");
  expect_bad(edited(j, [](json& x) { x["stages"].erase(7); }),
             "has 7 slots, replicas 2 x depth 2 x tp 2 needs 8");
  expect_bad(edited(j, [](json& x) { x["replicas"] = 3; }), "needs 12");
  expect_bad(edited(j, [](json& x) { x["stages"][3]["device"] = "cpu:99"; }),
             "stages[3]: device local/cpu:99 is not one of \"devices\"");
  expect_bad(edited(j, [](json& x) { x["devices"][1]["name"] = "cpu:0"; }),
             "devices[1]: device local/cpu:0 is listed twice");
  expect_bad(edited(j, [](json& x) { x["devices"][0]["device"] = "tpu"; }), "devices[0].device");
  expect_bad(edited(j, [](json& x) { x["stages"][2]["replica"] = 1; }),
             "stages[2]: is replica 1 stage 1 tp rank 0, but slot 2 must be replica 0");
  // Stage 1 moved to [3, 5) everywhere: layer 2 belongs to nobody.
  expect_bad(edited(j,
                    [](json& x) {
                      for (auto& s : x["stages"])
                        if (s["stage"] == 1) {
                          s["chunks"] = json::array({json::array({3, 5})});
                          s["layers"] = json::array({3, 5});
                        }
                    }),
             "do not cover model mlp's 5 layers contiguously");
  expect_bad(edited(j,
                    [](json& x) {
                      x["stages"][7]["chunks"] = json::array({json::array({1, 5})});
                      x["stages"][7].erase("layers");
                    }),
             "stages[7].chunks: [1, 5) differs from replica 0 tp rank 0 of stage 1");
  expect_bad(edited(j,
                    [](json& x) {
                      x["stages"][0]["chunks"] = json::array({json::array({0, 9})});
                    }),
             "stages[0].chunks[0]: chunk [0, 9) is not a non-empty range of the model's 5 layers");
  expect_bad(edited(j,
                    [](json& x) {
                      x["stages"][0]["layers"] = json::array({0, 1});
                    }),
             "stages[0].layers");
  expect_bad(edited(j, [](json& x) { x["schedule"] = "zigzag"; }), "schedule: unknown schedule");
  expect_bad(edited(j, [](json& x) { x["virtual_stages"] = 2; }), "virtual_stages");
  expect_bad(edited(j, [](json& x) { x["batch_shares"] = json::array({1.0}); }),
             "batch_shares: has 1 shares, the plan has 2 replicas");
  expect_bad(edited(j, [](json& x) { x["batch_shares"][1] = -1; }), "batch_shares");
  expect_bad(edited(j, [](json& x) { x.erase("microbatches"); }), "microbatches: missing");
  expect_bad(edited(j, [](json& x) { x["tp"] = "two"; }), "tp: must be an integer");
  expect_bad(edited(j, [](json& x) { x["frobnicate"] = 1; }), "frobnicate: unknown field");
  // The wrong model: not a model, or one whose layers the stages do not fit.
  expect_bad(edited(j, [](json& x) { x["model"]["layers"][0]["type"] = "nonsense"; }),
             "plan: model:");
  expect_bad(edited(j, [](json& x) { x["model"]["layers"].erase(4); }),
             "not a non-empty range of the model's 4 layers");
  // A plan edited in C++ with a device index out of range.
  auto in_memory = make(base);
  in_memory.stages[5].device = 99;
  try {
    (void)actors::to_json(in_memory);
    BOOST_ERROR("wrote a plan with a device index out of range");
  } catch (const runtime::input_error& e) {
    BOOST_TEST(std::string{e.what()}.find("stages[5]: device index 99 out of range") !=
                   std::string::npos,
               e.what());
  }
  // A plan for another model than the job's.
  auto o = options(1);
  o.model = "cnn";
  try {
    actors::adopt_plan_degrees(o, actors::plan_from_json(j));
    BOOST_ERROR("adopted a plan of the wrong model");
  } catch (const runtime::input_error& e) {
    BOOST_TEST(std::string{e.what()}.find("model mlp") != std::string::npos, e.what());
  }

  auto ps = options(1, 2, 1, 2);
  const auto pj = actors::to_json(make(ps));
  expect_bad(edited(pj, [](json& x) { x["ps"]["layout"]["params"][0]["numel"] = 7; }),
             "ps.layout:");
  expect_bad(edited(pj, [](json& x) { x["ps"]["shards"].erase(1); }),
             "ps.layout: spreads the parameters over 2 shards, \"ps.shards\" has 1");
  expect_bad(edited(pj, [](json& x) { x["ps"]["shards"][0]["device"] = "cpu:9"; }),
             "ps.shards[0]: device local/cpu:9");
  expect_bad(edited(pj, [](json& x) { x["ps"]["mode"] = "eventually"; }), "ps.mode");
  expect_bad(edited(pj, [](json& x) { x["ps"]["staleness"] = 3; }),
             "ps.staleness: 3 needs mode ssp");
  // The layout of another split of the model: the stages hold other parameters.
  auto pp = options(2, 2, 1, 2);
  auto other = actors::to_json(make(pp));
  expect_bad(edited(pj, [&](json& x) { x["ps"]["layout"] = other["ps"]["layout"]; }),
             "its parameters do not match the model and stages");
}

BOOST_AUTO_TEST_CASE(describe_lists_slots_groups_and_memory) {
  auto text = actors::describe(make(options(2, 2, 2)));
  BOOST_TEST(count(text, " tp ") >= 8u, text);
  BOOST_TEST(text.find("replica 0 stage 1 tp rank 1: layers") != std::string::npos, text);
  BOOST_TEST(text.find("replica 1 stage 0 tp rank 0: layers") != std::string::npos, text);
  BOOST_TEST(text.find("data-parallel groups") != std::string::npos, text);
  BOOST_TEST(text.find("  stage 1 tp rank 1: local/cpu:3 local/cpu:7\n") != std::string::npos, text);
  BOOST_TEST(text.find("tensor-parallel groups") != std::string::npos, text);
  BOOST_TEST(text.find("  replica 1 stage 0: local/cpu:4 local/cpu:5\n") != std::string::npos,
             text);
  BOOST_TEST(text.find("memory per device (estimate for adam, global batch 64)") !=
                 std::string::npos,
             text);
  BOOST_TEST(count(text, "local/cpu:") >= 8u + 8u + 8u + 8u, text);

  // Without tp or replicas the per-stage lines are as before.
  auto single = actors::describe(make(options(2)));
  BOOST_TEST(single.rfind("stage 0: layers [0, ", 0) == 0u, single);
  BOOST_TEST(single.find("groups") == std::string::npos, single);

  auto ps = options(1, 2, 1, 2);
  ps.ps_mode = actors::ps_mode::ssp;
  ps.staleness = 1;
  auto ps_text = actors::describe(make(ps));
  BOOST_TEST(ps_text.find("parameter servers (ssp, staleness 1") != std::string::npos, ps_text);
  BOOST_TEST(ps_text.find("  ps 1 on local/cpu:3: ") != std::string::npos, ps_text);
  BOOST_TEST(ps_text.find("data-parallel groups") == std::string::npos, ps_text);
}

BOOST_AUTO_TEST_CASE(tensor_parallelism_halves_the_split_layers_parameters) {
  actors::memory_assumptions a; // adam
  auto whole = actors::estimate_memory(make(options(1)), a);
  BOOST_TEST_REQUIRE(whole.size() == 1u);
  BOOST_TEST(whole[0].parameters == mlp_bytes);
  BOOST_TEST(whole[0].gradients == mlp_bytes);
  BOOST_TEST(whole[0].optimizer_state == 2 * mlp_bytes);
  auto split = actors::estimate_memory(make(options(1, 1, 2)), a);
  BOOST_TEST_REQUIRE(split.size() == 2u);
  for (const auto& m : split) {
    BOOST_TEST(m.parameters == mlp_tp2_bytes);
    BOOST_TEST(m.gradients == mlp_tp2_bytes);
    BOOST_TEST(m.optimizer_state == 2 * mlp_tp2_bytes);
    // Activations are counted in full on every rank (an upper bound).
    BOOST_TEST(m.activations == whole[0].activations);
  }
  // sgd keeps a buffer only with momentum.
  a.optimizer = "sgd";
  BOOST_TEST(actors::estimate_memory(make(options(1)), a)[0].optimizer_state == 0u);
  a.momentum = 0.9f;
  BOOST_TEST(actors::estimate_memory(make(options(1)), a)[0].optimizer_state == mlp_bytes);
  a.optimizer = "rmsprop";
  BOOST_CHECK_THROW(actors::estimate_memory(make(options(1)), a), runtime::input_error);
}

BOOST_AUTO_TEST_CASE(parameter_servers_hold_the_optimizer_state) {
  auto o = options(1, 2, 1, 2);
  o.ps_split_bytes = 4096;
  auto p = make(o);
  auto m = actors::estimate_memory(p, {});
  BOOST_TEST_REQUIRE(m.size() == 4u); // 2 workers, 2 ps shards
  for (std::size_t w = 0; w < 2; ++w) {
    BOOST_TEST(m[w].parameters == mlp_bytes);
    BOOST_TEST(m[w].gradients == mlp_bytes);
    BOOST_TEST(m[w].optimizer_state == 0u);
    BOOST_TEST(m[w].activations > 0u);
  }
  std::uint64_t held = 0;
  for (const auto& s : p.ps_shards) {
    const auto& shard = m[s.device];
    BOOST_TEST(shard.parameters > 0u);
    BOOST_TEST(shard.optimizer_state == 2 * shard.parameters);
    BOOST_TEST(shard.activations == 0u);
    held += shard.parameters;
  }
  BOOST_TEST(held == mlp_bytes);
}

BOOST_AUTO_TEST_CASE(activations_follow_the_schedule_peak) {
  // 2 stages, 4 micro-batches of 16: gpipe holds all 4 on both stages, 1f1b
  // holds 2 on stage 0 and 1 on the last stage.
  auto o = options(2);
  o.microbatches = 4;
  actors::memory_assumptions a;
  a.batch = 64;
  auto gpipe = actors::estimate_memory(make(o), a);
  o.schedule = actors::schedule_kind::one_f_one_b;
  auto one_f = actors::estimate_memory(make(o), a);
  BOOST_TEST_REQUIRE(gpipe.size() == 2u);
  BOOST_TEST(gpipe[0].activations > 0u);
  BOOST_TEST(one_f[0].activations * 2 == gpipe[0].activations);
  BOOST_TEST(one_f[1].activations * 4 == gpipe[1].activations);
  // The last stage of the mlp (whichever layers it holds) ends with 10 logits per sample.
  const auto p = make(o);
  BOOST_TEST(p.slot(0, 1).chunks[0].end == 5u);
  // Twice the batch, twice the activations.
  a.batch = 128;
  BOOST_TEST(actors::estimate_memory(make(o), a)[0].activations == 2 * one_f[0].activations);
}
