// Parameter servers: the assignment of parameters to shards, the ps shard
// actor's sync / async / ssp protocols against the optimizer applied by hand
// (bitwise), its validation and fault injection, the worker-side ps_client,
// gathering (merge_pieces) and resuming (split_pieces, set_params), the
// messages' registration, and a push / pull between two "processes" (two
// actor systems with couriers) over the data plane.

#define BOOST_TEST_DYN_LINK
#define BOOST_TEST_MODULE actors_ps_shard
#include <boost/test/unit_test.hpp>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <vector>

#include <caf/all.hpp>
#include <caf/io/all.hpp>

#include "actors/plan/ps_assignment.hpp"
#include "actors/ps/ps_client.hpp"
#include "actors/ps/ps_shard.hpp"
#include "models/layers/model_spec.hpp"
#include "models/train/optimizer.hpp"
#include "runtime/net/caf_error.hpp"
#include "runtime/error.hpp"
#include "actors/protocol/messages.hpp"
#include "actors/protocol/system_config.hpp"
#include "runtime/telemetry/trace.hpp"
#include "runtime/net/transport/auth.hpp"
#include "runtime/net/transport/courier.hpp"

using namespace troupe;
using namespace troupe::actors;
using namespace std::chrono_literals;
using actors::ps_msg;
using runtime::tensor;

namespace {

using tensor_map = std::map<std::string, tensor>;

// ------------------------------------------------------------------ model

/// A small two-stage model: stage 0 holds layer 0 ("0.weight" [6, 4],
/// "0.bias" [6]), stage 1 layer 2 ("2.weight" [3, 6], "2.bias" [3]).
struct small_model {
  models::model_spec spec =
      models::model_builder("ps").input({4}).dense(4, 6).relu().dense(6, 3).build();
  std::uint64_t seed = 7;

  std::vector<ps_param_info> infos() const {
    std::vector<ps_param_info> out;
    for (const auto& p : init())
      out.push_back({p.name, p.name[0] == '0' ? 0 : 1, p.value.numel()});
    return out;
  }
  /// The model's initial parameters (own storage).
  std::vector<models::parameter> init() const {
    auto layers = models::instantiate(spec, 0, spec.layers.size(), seed);
    std::vector<models::parameter> out;
    for (auto& l : layers)
      for (auto& p : l->parameters()) {
        models::parameter q;
        q.name = p.name;
        q.value = p.value.clone();
        q.decay = p.decay;
        out.push_back(std::move(q));
      }
    return out;
  }
  std::map<std::string, runtime::shape_t> shapes() const {
    std::map<std::string, runtime::shape_t> out;
    for (const auto& p : init())
      out.emplace(p.name, p.value.shape());
    return out;
  }
};

/// Deterministic f32 values of a given shape.
tensor values(const runtime::shape_t& shape, float seed) {
  auto t = tensor::empty(runtime::dtype::f32, shape);
  float* p = t.mutable_data<float>();
  for (std::int64_t i = 0; i < t.numel(); ++i)
    p[i] = std::sin(static_cast<float>(i) * 0.37f + seed) * 0.5f;
  return t;
}

/// Worker w's gradients of step `step` for the parameters of `stage`.
tensor_map grads_of(const small_model& m, int stage, int worker, std::int64_t step) {
  tensor_map out;
  for (const auto& p : m.init())
    if ((p.name[0] == '0' ? 0 : 1) == stage)
      out.emplace(p.name, values(p.value.shape(), 1.3f * static_cast<float>(worker) +
                                                      0.11f * static_cast<float>(step) +
                                                      static_cast<float>(p.name.size())));
  return out;
}

/// The flat tensor of `pieces` cut from full tensors.
tensor flat(std::span<const ps_piece> pieces, const tensor_map& full) {
  return flatten_pieces(pieces, [&](const std::string& n) { return full.at(n); });
}

ps_msg push_msg(const ps_assignment& a, int shard, int stage, int worker, std::int64_t step,
                float lr, float scale, const tensor_map& grads) {
  ps_msg m;
  m.kind = actors::ps_push;
  m.step = step;
  m.worker = worker;
  m.stage = stage;
  m.shard = shard;
  m.lr = lr;
  m.scale = scale;
  m.data = flat(a.pieces_of(shard, stage), grads);
  return m;
}

/// Reference: the model's parameters of `stage`, updated by `opt` once per
/// entry of `updates` (gradient, lr) applied in order.
tensor_map reference(const small_model& m, int stage, models::optimizer& opt,
                     const std::vector<std::pair<tensor_map, float>>& updates) {
  std::vector<models::parameter> params;
  for (auto& p : m.init())
    if ((p.name[0] == '0' ? 0 : 1) == stage)
      params.push_back(std::move(p));
  std::vector<models::parameter*> ptrs;
  for (auto& p : params)
    ptrs.push_back(&p);
  for (const auto& [g, lr] : updates) {
    for (auto& p : params) {
      p.grad = g.at(p.name).clone();
      p.grad_fresh = false;
    }
    opt.step(ptrs, lr);
  }
  tensor_map out;
  for (auto& p : params)
    out.emplace(p.name, p.value);
  return out;
}

/// ((g[0] + g[1]) + ...) * scale, elementwise, as the sync shard sums.
tensor_map worker_sum(const std::vector<tensor_map>& g, float scale) {
  tensor_map out;
  for (const auto& [name, t0] : g[0]) {
    auto acc = t0.clone();
    float* a = acc.mutable_data<float>();
    for (std::size_t w = 1; w < g.size(); ++w) {
      const float* x = g[w].at(name).data<float>();
      for (std::int64_t i = 0; i < acc.numel(); ++i)
        a[i] += x[i];
    }
    for (std::int64_t i = 0; i < acc.numel(); ++i)
      a[i] *= scale;
    out.emplace(name, acc);
  }
  return out;
}

tensor_map scaled(const tensor_map& g, float scale) {
  return worker_sum({g}, scale);
}

// ---------------------------------------------------------------- actors

struct fixture {
  actors::system_config cfg{2};
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  small_model model;
  std::vector<caf::actor> spawned;

  ~fixture() {
    for (auto& a : spawned)
      self->send_exit(a, caf::exit_reason::user_shutdown);
  }

  ps_shard_config config(const ps_assignment& a, int shard, int workers, ps_mode mode,
                         nlohmann::json opt) {
    ps_shard_config c;
    c.shard = shard;
    c.assignment = a;
    c.workers = workers;
    c.mode = mode;
    c.optimizer = std::move(opt);
    c.model = model.spec;
    c.seed = model.seed;
    return c;
  }
  caf::actor spawn(ps_shard_config c) {
    auto a = spawn_ps_shard(sys, std::move(c));
    spawned.push_back(a);
    return a;
  }
  void pull(const caf::actor& shard, int stage, int worker, std::int64_t step) {
    self->send(shard, actors::ps_pull_atom::value, std::int32_t{stage}, std::int32_t{worker}, step,
               caf::actor_cast<caf::actor>(self));
  }
  /// The next ps_msg, or nullopt after `limit`.
  std::optional<ps_msg> next(std::chrono::milliseconds limit = 5s) {
    std::optional<ps_msg> got;
    self->receive([&](ps_msg& m) { got = std::move(m); }, caf::after(limit) >> [] {});
    return got;
  }
  ps_msg expect(std::chrono::milliseconds limit = 5s) {
    auto m = next(limit);
    BOOST_REQUIRE_MESSAGE(m, "no ps_msg within " << limit.count() << " ms");
    return std::move(*m);
  }
  void expect_nothing() {
    auto m = next(150ms);
    BOOST_CHECK_MESSAGE(!m, "unexpected ps_msg for worker " << (m ? m->worker : -1) << " step "
                                                            << (m ? m->step : -1));
  }
  template <class T, class... Ts>
  T ask(const caf::actor& a, Ts... xs) {
    T out{};
    self->request(a, caf::infinite, xs...)
        .receive([&](T& x) { out = std::move(x); },
                 [&](caf::error& e) { BOOST_FAIL("request failed: " << sys.render(e)); });
    return out;
  }
  /// Waits for `a` (monitored) to die; returns its error text.
  std::string death(const caf::actor& a) {
    std::string why = "(still alive)";
    self->receive(
        [&](caf::down_msg& dm) {
          if (dm.source == a.address())
            why = runtime::describe(sys, dm.reason);
        },
        caf::after(5s) >> [] {});
    return why;
  }
};

bool contains(const std::string& s, const std::string& needle) {
  return s.find(needle) != std::string::npos;
}

} // namespace

// ============================================================ assignment

BOOST_AUTO_TEST_CASE(assignment_splits_large_tensors_and_balances_bytes) {
  std::vector<ps_param_info> params = {{"emb", 0, 1000}, {"a", 0, 300}, {"b", 1, 200},
                                       {"c", 1, 100},    {"d", 2, 100}, {"e", 2, 50},
                                       {"f", 2, 0}};
  auto a = assign_parameters(params, 3, 2000); // emb (4000 bytes) is split
  BOOST_CHECK_NO_THROW(validate(a));
  BOOST_TEST(a.shards == 3);
  // emb: three near-equal contiguous pieces, piece i on shard i.
  std::vector<ps_piece> emb;
  for (const auto& p : a.pieces)
    if (p.param == "emb")
      emb.push_back(p);
  BOOST_REQUIRE_EQUAL(emb.size(), 3u);
  for (int s = 0; s < 3; ++s) {
    BOOST_TEST(emb[static_cast<std::size_t>(s)].shard == s);
    BOOST_TEST(!emb[static_cast<std::size_t>(s)].whole);
  }
  BOOST_TEST(emb[0].offset == 0);
  BOOST_TEST(emb[0].length == 334);
  BOOST_TEST(emb[1].offset == 334);
  BOOST_TEST(emb[2].offset + emb[2].length == 1000);
  BOOST_TEST(emb[1].name() == "emb@334");
  // The rest whole, largest first onto the least-loaded shard: bytes balanced
  // within the largest whole tensor.
  auto bytes = a.bytes_per_shard();
  auto [lo, hi] = std::minmax_element(bytes.begin(), bytes.end());
  BOOST_TEST(*hi - *lo <= 300u * 4);
  std::uint64_t total = 0;
  for (auto b : bytes)
    total += b;
  BOOST_TEST(total == (1000u + 300 + 200 + 100 + 100 + 50) * 4);
  for (const auto& p : a.pieces)
    if (p.param != "emb") {
      BOOST_TEST(p.whole);
      BOOST_TEST(p.name() == p.param);
    }
  // Sorted by (shard, stage, model order, offset); pieces_of is contiguous.
  for (std::size_t i = 1; i < a.pieces.size(); ++i)
    BOOST_TEST((std::make_pair(a.pieces[i - 1].shard, a.pieces[i - 1].stage) <=
                std::make_pair(a.pieces[i].shard, a.pieces[i].stage)));
  std::size_t counted = 0;
  for (int s = 0; s < 3; ++s)
    for (auto k : a.stages_of(s)) {
      auto ps = a.pieces_of(s, k);
      BOOST_TEST(!ps.empty());
      for (const auto& p : ps) {
        BOOST_TEST(p.shard == s);
        BOOST_TEST(p.stage == k);
      }
      counted += ps.size();
    }
  BOOST_TEST(counted == a.pieces.size());
  BOOST_TEST(a.shards_of_stage(0) == (std::vector<int>{0, 1, 2}));
  // Deterministic, and the JSON form round-trips.
  BOOST_TEST((assign_parameters(params, 3, 2000) == a));
  auto back = ps_assignment_from_json(nlohmann::json::parse(to_json(a).dump()));
  BOOST_TEST((back == a));
  // One shard: nothing is split.
  auto one = assign_parameters(params, 1, 0);
  BOOST_TEST(one.pieces.size() == params.size());
  for (const auto& p : one.pieces)
    BOOST_TEST(p.whole);
  // Everything split when the threshold is 0; tiny tensors leave no empty pieces.
  auto all = assign_parameters({{"x", 0, 2}, {"y", 0, 9}}, 4, 0);
  BOOST_TEST(all.pieces.size() == 2u + 4u);
  BOOST_CHECK_NO_THROW(validate(all));
}

BOOST_AUTO_TEST_CASE(assignment_rejects_bad_input) {
  std::vector<ps_param_info> ok = {{"a", 0, 10}, {"b", 0, 20}};
  BOOST_CHECK_THROW(assign_parameters(ok, 0, 100), runtime::input_error);
  BOOST_CHECK_THROW(assign_parameters(ok, 5000, 100), runtime::input_error);
  BOOST_CHECK_THROW(assign_parameters(ok, 2, -1), runtime::input_error);
  BOOST_CHECK_THROW(assign_parameters({{"a", 0, 1}, {"a", 0, 2}}, 2, 100), runtime::input_error);
  BOOST_CHECK_THROW(assign_parameters({{"a@1", 0, 1}}, 2, 100), runtime::input_error);
  BOOST_CHECK_THROW(assign_parameters({{"a", -1, 1}}, 2, 100), runtime::input_error);
  BOOST_CHECK_THROW(assign_parameters({{"a", 0, -1}}, 2, 100), runtime::input_error);
  // A JSON form whose pieces overlap, leave a gap or sit on a missing shard.
  auto j = to_json(assign_parameters(ok, 2, 0));
  auto overlap = j;
  overlap["pieces"][1]["offset"] = 1;
  BOOST_CHECK_THROW(ps_assignment_from_json(overlap), runtime::input_error);
  auto gap = j;
  gap["pieces"].erase(0);
  BOOST_CHECK_THROW(ps_assignment_from_json(gap), runtime::input_error);
  auto shard = j;
  shard["shards"] = 1;
  BOOST_CHECK_THROW(ps_assignment_from_json(shard), runtime::input_error);
  BOOST_CHECK_THROW(ps_assignment_from_json(nlohmann::json{{"shards", 2}}), runtime::input_error);
}

BOOST_AUTO_TEST_CASE(flatten_and_scatter_round_trip) {
  auto a = assign_parameters({{"w", 0, 10}, {"b", 0, 3}}, 2, 8);
  tensor_map full{{"w", values({2, 5}, 1.f)}, {"b", values({3}, 2.f)}};
  tensor_map out{{"w", tensor::zeros(runtime::dtype::f32, {2, 5})},
                 {"b", tensor::zeros(runtime::dtype::f32, {3})}};
  auto before = out.at("w");
  for (int s = 0; s < 2; ++s) {
    auto f = flat(a.pieces_of(s, 0), full);
    BOOST_TEST(f.numel() == a.numel_of(s, 0));
    scatter_pieces(a.pieces_of(s, 0), f,
                   [&](const std::string& n) -> tensor& { return out.at(n); });
  }
  BOOST_TEST(runtime::bitwise_equal(out.at("w"), full.at("w")));
  BOOST_TEST(runtime::bitwise_equal(out.at("b"), full.at("b")));
  // Copy on write: the tensor shared before the scatter kept its zeros.
  BOOST_TEST(!before.shares_storage_with(out.at("w")));
  BOOST_TEST(before.values<float>()[0] == 0.f);
  // An undefined source reads as zeros; a wrong-length flat is refused.
  auto z = flatten_pieces(a.pieces_of(0, 0), [](const std::string&) { return tensor{}; });
  for (float x : z.values<float>())
    BOOST_TEST(x == 0.f);
  BOOST_CHECK_THROW(scatter_pieces(a.pieces_of(0, 0), tensor::zeros(runtime::dtype::f32, {1}),
                                   [&](const std::string& n) -> tensor& { return out.at(n); }),
                    runtime::input_error);
}

BOOST_AUTO_TEST_CASE(mode_names_and_config_json) {
  for (auto m : {ps_mode::sync, ps_mode::async, ps_mode::ssp})
    BOOST_TEST((parse_ps_mode(to_string(m)) == m));
  BOOST_CHECK_THROW(parse_ps_mode("bsp"), runtime::input_error);
  small_model m;
  ps_shard_config c;
  c.shard = 1;
  c.assignment = assign_parameters(m.infos(), 2, 32);
  c.workers = 3;
  c.mode = ps_mode::ssp;
  c.staleness = 2;
  c.optimizer = {{"type", "adam"}, {"lr", 0.01}};
  c.model = m.spec;
  c.seed = 99;
  c.fault_step = 4;
  c.trace = true;
  auto back = ps_shard_config_from_json(nlohmann::json::parse(to_json(c).dump()));
  BOOST_TEST(back.shard == 1);
  BOOST_TEST((back.assignment == c.assignment));
  BOOST_TEST(back.workers == 3);
  BOOST_TEST((back.mode == ps_mode::ssp));
  BOOST_TEST(back.staleness == 2);
  BOOST_TEST(back.optimizer == c.optimizer);
  BOOST_TEST((back.model == c.model));
  BOOST_TEST(back.seed == 99u);
  BOOST_TEST(back.fault_step == 4);
  BOOST_TEST(back.trace);
  auto bad = to_json(c);
  bad["shard"] = 2;
  BOOST_CHECK_THROW(ps_shard_config_from_json(bad), runtime::input_error);
  bad = to_json(c);
  bad["workers"] = 0;
  BOOST_CHECK_THROW(ps_shard_config_from_json(bad), runtime::input_error);
}

// ============================================================ the shard

BOOST_FIXTURE_TEST_CASE(sync_sums_in_worker_order_and_serves_after_all_pushed, fixture) {
  const auto a = assign_parameters(model.infos(), 2, 32); // both weights split
  const nlohmann::json opt = {{"type", "adam"}, {"lr", 0.01}, {"weight_decay", 0.1}};
  auto s0 = spawn(config(a, 0, 3, ps_mode::sync, opt));
  auto s1 = spawn(config(a, 1, 3, ps_mode::sync, opt));
  const float lr = 0.05f, scale = 1.0f / 3;
  std::vector<tensor_map> g;
  for (int w = 0; w < 3; ++w)
    g.push_back(grads_of(model, 0, w, 0));
  // Worker 0 asks for step 1 before its push: it waits.
  pull(s0, 0, 0, 1);
  expect_nothing();
  for (int w : {1, 0})
    for (int s = 0; s < 2; ++s)
      self->send(s == 0 ? s0 : s1, push_msg(a, s, 0, w, 0, lr, scale, g[w]));
  expect_nothing(); // two of three pushes: no update yet
  pull(s0, 0, 1, 1);
  expect_nothing();
  for (int s = 0; s < 2; ++s)
    self->send(s == 0 ? s0 : s1, push_msg(a, s, 0, 2, 0, lr, scale, g[2]));
  auto ref_opt = models::make_optimizer(opt);
  auto ref = reference(model, 0, *ref_opt, {{worker_sum(g, scale), lr}});
  const auto want = flat(a.pieces_of(0, 0), ref);
  std::set<int> answered;
  for (int i = 0; i < 2; ++i) {
    auto m = expect();
    BOOST_TEST(m.kind == actors::ps_params);
    BOOST_TEST(m.step == 1);
    BOOST_TEST(m.stage == 0);
    BOOST_TEST(m.shard == 0);
    BOOST_TEST(m.version == 1);
    BOOST_TEST(runtime::bitwise_equal(m.data, want));
    answered.insert(m.worker);
  }
  BOOST_TEST((answered == std::set<int>{0, 1}));
  pull(s0, 0, 2, 1); // already satisfied: served at once
  auto m = expect();
  BOOST_TEST(m.worker == 2);
  BOOST_TEST(m.version == 1);
  // Both shards' pieces reassemble to the reference; stage 1 is untouched.
  std::vector<runtime::named_tensors> parts{
      ask<runtime::named_tensors>(s0, actors::get_params_atom::value),
      ask<runtime::named_tensors>(s1, actors::get_params_atom::value)};
  auto merged = merge_pieces(a, parts, model.shapes());
  auto init = model.init();
  BOOST_REQUIRE_EQUAL(merged.names.size(), init.size());
  for (std::size_t i = 0; i < init.size(); ++i) {
    BOOST_TEST(merged.names[i] == init[i].name);
    const auto& expect_t = ref.count(init[i].name) ? ref.at(init[i].name) : init[i].value;
    BOOST_TEST(runtime::bitwise_equal(merged.tensors[i], expect_t), init[i].name);
  }
  // The optimizer state, too (Adam's moments, by "<param>.<kind>").
  std::vector<runtime::named_tensors> states{
      ask<runtime::named_tensors>(s0, actors::get_state_atom::value),
      ask<runtime::named_tensors>(s1, actors::get_state_atom::value)};
  auto merged_state = merge_pieces(a, states, model.shapes());
  auto ref_state = ref_opt->state();
  BOOST_REQUIRE_EQUAL(merged_state.names.size(), ref_state.size());
  std::map<std::string, tensor> ref_by_name(ref_state.begin(), ref_state.end());
  for (std::size_t i = 0; i < merged_state.names.size(); ++i)
    BOOST_TEST(
        runtime::bitwise_equal(merged_state.tensors[i], ref_by_name.at(merged_state.names[i])),
        merged_state.names[i]);
  auto st = ask<actors::ps_stats>(s0, actors::ps_stats_atom::value);
  BOOST_TEST(st.shard == 0);
  BOOST_TEST(st.pushes == 3u);
  BOOST_TEST(st.pulls == 3u);
  BOOST_TEST(st.updates == 1u);
  BOOST_TEST(st.bytes_in == 3u * want.nbytes());
  BOOST_TEST(st.bytes_out == 3u * want.nbytes());
  BOOST_TEST(st.max_gap <= 0);
  BOOST_TEST(st.apply_seconds >= 0.0);
  // A second step: version 2 once all three pushed step 1.
  for (int w = 0; w < 3; ++w)
    self->send(s0, push_msg(a, 0, 0, w, 1, lr, scale, grads_of(model, 0, w, 1)));
  pull(s0, 0, 0, 2);
  BOOST_TEST(expect().version == 2);
}

BOOST_FIXTURE_TEST_CASE(async_applies_every_push_on_arrival, fixture) {
  const auto a = assign_parameters(model.infos(), 1, 1 << 20);
  const nlohmann::json opt = {
      {"type", "sgd"}, {"lr", 0.1}, {"momentum", 0.9}, {"weight_decay", 0.01}};
  auto s = spawn(config(a, 0, 2, ps_mode::async, opt));
  const float lr = 0.1f, scale = 0.5f;
  auto g0 = grads_of(model, 0, 0, 0), g1 = grads_of(model, 0, 1, 0);
  // A pull that overtakes its worker's push waits for it.
  pull(s, 0, 0, 1);
  expect_nothing();
  self->send(s, push_msg(a, 0, 0, 0, 0, lr, scale, g0));
  auto ref_opt = models::make_optimizer(opt);
  auto first = expect();
  BOOST_TEST(first.worker == 0);
  BOOST_TEST(first.version == 1); // worker 1's push is not needed
  auto ref1 = reference(model, 0, *models::make_optimizer(opt), {{scaled(g0, scale), lr}});
  BOOST_TEST(runtime::bitwise_equal(first.data, flat(a.pieces_of(0, 0), ref1)));
  self->send(s, push_msg(a, 0, 0, 1, 0, lr, scale, g1));
  pull(s, 0, 1, 1);
  auto second = expect();
  BOOST_TEST(second.worker == 1);
  BOOST_TEST(second.version == 2);
  auto ref2 = reference(model, 0, *ref_opt, {{scaled(g0, scale), lr}, {scaled(g1, scale), lr}});
  BOOST_TEST(runtime::bitwise_equal(second.data, flat(a.pieces_of(0, 0), ref2)));
  // Worker 0 runs on alone: versions count pushes.
  self->send(s, push_msg(a, 0, 0, 0, 1, lr, scale, grads_of(model, 0, 0, 1)));
  pull(s, 0, 0, 2);
  BOOST_TEST(expect().version == 3);
  auto st = ask<actors::ps_stats>(s, actors::ps_stats_atom::value);
  BOOST_TEST(st.updates == 3u);
  BOOST_TEST(st.pushes == 3u);
  BOOST_TEST(st.max_gap == 1); // worker 0 pulled step 2 while worker 1 had pushed 1 step
}

BOOST_FIXTURE_TEST_CASE(ssp_holds_a_fast_worker_k_steps_ahead, fixture) {
  const auto a = assign_parameters(model.infos(), 1, 1 << 20);
  auto c = config(a, 0, 2, ps_mode::ssp, {{"type", "sgd"}, {"lr", 0.1}});
  c.staleness = 2;
  c.trace = true;
  auto s = spawn(c);
  auto push = [&](int w, std::int64_t step) {
    self->send(s, push_msg(a, 0, 0, w, step, 0.1f, 0.5f, grads_of(model, 0, w, step)));
  };
  // The fast worker 0 runs two steps ahead of worker 1, which has pushed nothing.
  push(0, 0);
  pull(s, 0, 0, 1);
  BOOST_TEST(expect().version == 1);
  push(0, 1);
  pull(s, 0, 0, 2);
  auto m2 = expect();
  BOOST_TEST(m2.step == 2);
  BOOST_TEST(m2.version == 2);
  push(0, 2);
  pull(s, 0, 0, 3); // 3 steps ahead of the slowest: held
  expect_nothing();
  push(1, 0); // the slowest has pushed 1 step: 3 - 1 <= K
  auto m3 = expect();
  BOOST_TEST(m3.worker == 0);
  BOOST_TEST(m3.step == 3);
  BOOST_TEST(m3.version == 4);
  auto st = ask<actors::ps_stats>(s, actors::ps_stats_atom::value);
  BOOST_TEST(st.max_gap == 2); // == K, never more
  BOOST_TEST(st.updates == 4u);
  // The slow worker itself is never held.
  pull(s, 0, 1, 1);
  BOOST_TEST(expect().worker == 1);
  // The timeline: pushes, updates and pulls on the shard's own track.
  auto events =
      runtime::trace_events_from_json_text(ask<std::string>(s, actors::get_trace_atom::value));
  std::map<std::string, int> count;
  for (const auto& e : events) {
    ++count[e.name];
    BOOST_TEST(e.tid == ps_trace_tid(0));
  }
  BOOST_TEST(count["push"] == 4);
  BOOST_TEST(count["update"] == 4);
  BOOST_TEST(count["pull"] == 4);
}

BOOST_FIXTURE_TEST_CASE(bad_messages_end_the_shard_with_an_error_naming_them, fixture) {
  const auto a = assign_parameters(model.infos(), 1, 1 << 20);
  const nlohmann::json opt = {{"type", "sgd"}, {"lr", 0.1}};
  auto g = grads_of(model, 0, 0, 0);
  auto good = [&](int w = 0, std::int64_t step = 0, float lr = 0.1f) {
    return push_msg(a, 0, 0, w, step, lr, 1.f, g);
  };
  struct bad_case {
    std::string needle;
    std::function<void(const caf::actor&)> send;
    ps_mode mode = ps_mode::sync;
    std::int64_t fault = -1;
  };
  std::vector<bad_case> cases = {
      {"wrong length",
       [&](const caf::actor& s) {
         auto m = good();
         m.data = tensor::zeros(runtime::dtype::f32, {m.data.numel() - 1});
         self->send(s, std::move(m));
       }},
      {"unknown stage",
       [&](const caf::actor& s) {
         auto m = good();
         m.stage = 5;
         self->send(s, std::move(m));
       }},
      {"duplicate push of step 0 from worker 0",
       [&](const caf::actor& s) {
         self->send(s, good());
         self->send(s, good());
       }},
      {"worker out of range", [&](const caf::actor& s) { self->send(s, good(7)); }},
      {"f32",
       [&](const caf::actor& s) {
         auto m = good();
         m.data = tensor::zeros(runtime::dtype::i32, {m.data.numel()});
         self->send(s, std::move(m));
       }},
      {"other workers' pushes",
       [&](const caf::actor& s) {
         self->send(s, good(0));
         self->send(s, good(1, 0, 0.2f));
       }},
      {"before its push of step 0", [&](const caf::actor& s) { self->send(s, good(0, 1)); }},
      {"a worker pulls step s after pushing step s - 1",
       [&](const caf::actor& s) { pull(s, 0, 0, 3); }},
      {"injected fault at step 1",
       [&](const caf::actor& s) {
         self->send(s, good(0, 0));
         self->send(s, good(1, 0));
         pull(s, 0, 0, 1);
         self->send(s, good(0, 1));
         self->send(s, good(1, 1));
       },
       ps_mode::sync, 1},
      {"injected fault at step 0", [&](const caf::actor& s) { self->send(s, good(1, 0)); },
       ps_mode::async, 0},
  };
  for (auto& bc : cases) {
    auto c = config(a, 0, 2, bc.mode, opt);
    c.fault_step = bc.fault;
    auto s = spawn(c);
    self->monitor(s);
    bc.send(s);
    auto why = death(s);
    BOOST_TEST(contains(why, "ps_shard 0: "), why);
    BOOST_TEST(contains(why, bc.needle), "expected '" << bc.needle << "' in: " << why);
    // Drain replies sent before the failure (the fault case's step 1 pull).
    while (next(10ms)) {
    }
  }
}

BOOST_FIXTURE_TEST_CASE(spawning_checks_the_config_against_the_model, fixture) {
  auto infos = model.infos();
  infos[0].numel += 1;
  auto c = config(assign_parameters(infos, 1, 1 << 20), 0, 1, ps_mode::sync, {{"type", "sgd"}});
  BOOST_CHECK_THROW(spawn_ps_shard(sys, c), runtime::input_error);
  auto unknown = model.infos();
  unknown.push_back({"9.weight", 1, 4});
  c = config(assign_parameters(unknown, 1, 1 << 20), 0, 1, ps_mode::sync, {{"type", "sgd"}});
  BOOST_CHECK_THROW(spawn_ps_shard(sys, c), runtime::input_error);
  c = config(assign_parameters(model.infos(), 1, 1 << 20), 0, 1, ps_mode::sync, {{"type", "lion"}});
  BOOST_CHECK_THROW(spawn_ps_shard(sys, c), runtime::input_error);
  c.optimizer = {{"type", "sgd"}};
  c.shard = 1;
  BOOST_CHECK_THROW(spawn_ps_shard(sys, c), runtime::input_error);
}

// ======================================================= gather and resume

BOOST_FIXTURE_TEST_CASE(merge_pieces_reassembles_every_shard_bitwise, fixture) {
  const auto a = assign_parameters(model.infos(), 3, 16);
  std::vector<caf::actor> shards;
  std::vector<runtime::named_tensors> parts;
  for (int s = 0; s < 3; ++s) {
    shards.push_back(spawn(config(a, s, 1, ps_mode::sync, {{"type", "sgd"}})));
    parts.push_back(ask<runtime::named_tensors>(shards.back(), actors::get_params_atom::value));
  }
  auto merged = merge_pieces(a, parts, model.shapes());
  auto init = model.init();
  BOOST_REQUIRE_EQUAL(merged.names.size(), init.size());
  for (std::size_t i = 0; i < init.size(); ++i) {
    BOOST_TEST(merged.names[i] == init[i].name);
    BOOST_TEST(merged.tensors[i].shape() == init[i].value.shape());
    BOOST_TEST(runtime::bitwise_equal(merged.tensors[i], init[i].value), init[i].name);
  }
  // split_pieces is the inverse, shard by shard.
  for (int s = 0; s < 3; ++s) {
    auto cut = split_pieces(a, s, merged);
    const auto& got = parts[static_cast<std::size_t>(s)];
    BOOST_REQUIRE_EQUAL(cut.names.size(), got.names.size());
    std::map<std::string, tensor> by_name;
    for (std::size_t i = 0; i < got.names.size(); ++i)
      by_name.emplace(got.names[i], got.tensors[i]);
    for (std::size_t i = 0; i < cut.names.size(); ++i)
      BOOST_TEST(runtime::bitwise_equal(cut.tensors[i], by_name.at(cut.names[i])), cut.names[i]);
  }
  // A missing shard's answer, or a stray name, is refused.
  auto missing = parts;
  missing[1] = {};
  BOOST_CHECK_THROW(merge_pieces(a, missing, model.shapes()), runtime::input_error);
  BOOST_CHECK_THROW(merge_pieces(a, std::span(parts).first(2), model.shapes()),
                    runtime::input_error);
  auto stray = parts;
  stray[0].names[0] = "nope";
  BOOST_CHECK_THROW(merge_pieces(a, stray, model.shapes()), runtime::input_error);
  // Resume: a fresh shard takes other values and state before training.
  runtime::named_tensors other;
  for (const auto& p : init) {
    other.names.push_back(p.name);
    other.tensors.push_back(values(p.value.shape(), 4.f));
  }
  auto fresh = spawn(config(a, 1, 1, ps_mode::sync, {{"type", "sgd"}}));
  BOOST_TEST(ask<bool>(fresh, actors::set_params_atom::value, split_pieces(a, 1, other)));
  auto back = ask<runtime::named_tensors>(fresh, actors::get_params_atom::value);
  auto want = split_pieces(a, 1, other);
  BOOST_REQUIRE_EQUAL(back.names.size(), want.names.size());
  for (std::size_t i = 0; i < want.names.size(); ++i) {
    BOOST_TEST(back.names[i] == want.names[i]);
    BOOST_TEST(runtime::bitwise_equal(back.tensors[i], want.tensors[i]));
  }
  // Incomplete parameters are refused (the shard stays up).
  auto partial = split_pieces(a, 1, other);
  partial.names.pop_back();
  partial.tensors.pop_back();
  bool refused = false;
  self->request(fresh, caf::infinite, actors::set_params_atom::value, partial)
      .receive([](bool) {}, [&](caf::error&) { refused = true; });
  BOOST_TEST(refused);
}

BOOST_FIXTURE_TEST_CASE(optimizer_state_resumes_on_a_fresh_shard, fixture) {
  const auto a = assign_parameters(model.infos(), 2, 32);
  const nlohmann::json opt = {{"type", "adam"}, {"lr", 0.01}};
  auto trained = spawn(config(a, 0, 1, ps_mode::sync, opt));
  self->send(trained, push_msg(a, 0, 0, 0, 0, 0.01f, 1.f, grads_of(model, 0, 0, 0)));
  pull(trained, 0, 0, 1);
  expect();
  auto params = ask<runtime::named_tensors>(trained, actors::get_params_atom::value);
  auto state = ask<runtime::named_tensors>(trained, actors::get_state_atom::value);
  BOOST_TEST(!state.names.empty());
  // A shard resumed at step 1 with that state applies step 1 exactly as the
  // original does.
  auto c = config(a, 0, 1, ps_mode::sync, opt);
  c.first_step = 1;
  auto resumed = spawn(c);
  BOOST_TEST(ask<bool>(resumed, actors::set_params_atom::value, params));
  BOOST_TEST(ask<bool>(resumed, actors::set_state_atom::value, state));
  auto g1 = grads_of(model, 0, 0, 1);
  for (const auto& s : {trained, resumed})
    self->send(s, push_msg(a, 0, 0, 0, 1, 0.01f, 1.f, g1));
  pull(trained, 0, 0, 2);
  auto x = expect();
  pull(resumed, 0, 0, 2);
  auto y = expect();
  BOOST_TEST(x.version == 2);
  BOOST_TEST(y.version == 2);
  BOOST_TEST(runtime::bitwise_equal(x.data, y.data));
  // After the first push, resuming is refused.
  bool refused = false;
  self->request(resumed, caf::infinite, actors::set_params_atom::value, params)
      .receive([](bool) {}, [&](caf::error&) { refused = true; });
  BOOST_TEST(refused);
}

// ============================================================== ps_client

BOOST_FIXTURE_TEST_CASE(client_packs_and_unpacks_across_shards, fixture) {
  const auto a = assign_parameters(model.infos(), 3, 16); // the weights split over all 3
  auto me = caf::actor_cast<caf::actor>(self);
  // The "shards" are this test's actor: it sees exactly what the client sends.
  ps_client c{0, 1, a, {me, me, me}, nullptr, me};
  BOOST_TEST(c.active());
  BOOST_TEST(c.holders() == a.shards_of_stage(0));
  auto params = model.init();
  std::vector<models::parameter*> ptrs;
  for (auto& p : params)
    if (p.name[0] == '0')
      ptrs.push_back(&p);
  auto g = grads_of(model, 0, 1, 5);
  for (auto* p : ptrs) {
    p->grad = g.at(p->name);
    p->grad_fresh = false;
  }
  ptrs[1]->grad_fresh = true; // no gradient this step: zeros
  g[ptrs[1]->name] = tensor::zeros(runtime::dtype::f32, ptrs[1]->value.shape());
  c.push(5, ptrs, 0.25f, 0.5f);
  std::set<int> pushed;
  for (std::size_t i = 0; i < c.holders().size(); ++i) {
    auto m = expect();
    BOOST_TEST(m.kind == actors::ps_push);
    BOOST_TEST(m.step == 5);
    BOOST_TEST(m.worker == 1);
    BOOST_TEST(m.stage == 0);
    BOOST_TEST(m.lr == 0.25f);
    BOOST_TEST(m.scale == 0.5f);
    BOOST_TEST(runtime::bitwise_equal(m.data, flat(a.pieces_of(m.shard, 0), g)));
    pushed.insert(m.shard);
  }
  BOOST_TEST(pushed.size() == c.holders().size());
  BOOST_TEST(c.pushes() == c.holders().size());
  c.request(6);
  BOOST_TEST(!c.ready());
  for (std::size_t i = 0; i < c.holders().size(); ++i)
    self->receive(
        [&](actors::ps_pull_atom, std::int32_t stage, std::int32_t worker, std::int64_t step,
            caf::actor reply_to) {
          BOOST_TEST(stage == 0);
          BOOST_TEST(worker == 1);
          BOOST_TEST(step == 6);
          BOOST_TEST((reply_to == me));
        },
        caf::after(5s) >> [] { BOOST_FAIL("no pull"); });
  // Replies in reverse shard order; ready only with the last.
  tensor_map next_values;
  for (auto* p : ptrs)
    next_values.emplace(p->name,
                        values(p->value.shape(), 9.f + static_cast<float>(p->name.size())));
  auto holders = c.holders();
  for (auto it = holders.rbegin(); it != holders.rend(); ++it) {
    ps_msg r;
    r.kind = actors::ps_params;
    r.step = 6;
    r.worker = 1;
    r.stage = 0;
    r.shard = *it;
    r.version = 10 + *it;
    r.data = flat(a.pieces_of(*it, 0), next_values);
    if (it + 1 != holders.rend()) {
      BOOST_TEST(!c.on_params(ps_msg{r}));
      BOOST_CHECK_THROW(c.on_params(std::move(r)), runtime::input_error); // twice
    } else {
      BOOST_TEST(c.on_params(std::move(r)));
    }
  }
  std::vector<tensor> before;
  for (auto* p : ptrs)
    before.push_back(p->value);
  auto old0 = before[0].clone();
  c.apply(ptrs);
  for (std::size_t i = 0; i < ptrs.size(); ++i) {
    BOOST_TEST(runtime::bitwise_equal(ptrs[i]->value, next_values.at(ptrs[i]->name)));
    BOOST_TEST(!ptrs[i]->value.shares_storage_with(before[i])); // fresh storage
  }
  BOOST_TEST(runtime::bitwise_equal(before[0], old0)); // the old values untouched
  for (int s : holders)
    BOOST_TEST(c.versions()[static_cast<std::size_t>(s)] == 10 + s);
  BOOST_TEST(c.requested() == -1);
  // Replies that do not match the request are refused.
  c.request(7);
  ps_msg wrong;
  wrong.kind = actors::ps_params;
  wrong.step = 8;
  wrong.worker = 1;
  wrong.stage = 0;
  wrong.shard = holders[0];
  wrong.data = flat(a.pieces_of(holders[0], 0), next_values);
  BOOST_CHECK_THROW(c.on_params(ps_msg{wrong}), runtime::input_error);
  wrong.step = 7;
  wrong.data = tensor::zeros(runtime::dtype::f32, {1});
  BOOST_CHECK_THROW(c.on_params(ps_msg{wrong}), runtime::input_error);
  BOOST_CHECK_THROW(c.apply(ptrs), std::logic_error);
  // The wrong parameter set is refused.
  BOOST_CHECK_THROW(c.push(7, std::span(ptrs).first(1), 0.1f, 1.f), runtime::input_error);
  for (std::size_t i = 0; i < holders.size(); ++i) // the pulls of step 7
    self->receive(
        [](actors::ps_pull_atom, std::int32_t, std::int32_t, std::int64_t, caf::actor) {},
        caf::after(5s) >> [] { BOOST_FAIL("no pull"); });
  // A stage without parameters has no shards: nothing to send, ready at once.
  auto empty = assign_parameters({{"x", 0, 4}}, 2, 1 << 20);
  ps_client idle{3, 0, empty, {me, me}, nullptr, me};
  BOOST_TEST(!idle.active());
  idle.push(0, {}, 0.1f, 1.f);
  idle.request(1);
  BOOST_TEST(idle.ready());
  BOOST_TEST(!next(50ms));
}

BOOST_FIXTURE_TEST_CASE(clients_train_a_step_through_real_shards, fixture) {
  const auto a = assign_parameters(model.infos(), 3, 16);
  const nlohmann::json opt = {{"type", "sgd"}, {"lr", 0.5}, {"weight_decay", 0.01}};
  std::vector<caf::actor> shards;
  for (int s = 0; s < 3; ++s)
    shards.push_back(spawn(config(a, s, 2, ps_mode::sync, opt)));
  // Two workers (data-parallel replicas of stage 0), each its own actor.
  caf::scoped_actor w0{sys}, w1{sys};
  std::vector<caf::scoped_actor*> workers{&w0, &w1};
  std::vector<std::vector<models::parameter>> params;
  std::vector<ps_client> clients;
  std::vector<tensor_map> g;
  for (int w = 0; w < 2; ++w) {
    params.push_back({});
    for (auto& p : model.init())
      if (p.name[0] == '0')
        params.back().push_back(std::move(p));
    clients.emplace_back(0, w, a, shards, nullptr, caf::actor_cast<caf::actor>(*workers[w]));
    g.push_back(grads_of(model, 0, w, 0));
  }
  for (int w = 0; w < 2; ++w) {
    std::vector<models::parameter*> ptrs;
    for (auto& p : params[w]) {
      p.grad = g[w].at(p.name);
      p.grad_fresh = false;
      ptrs.push_back(&p);
    }
    clients[w].push(0, ptrs, 0.5f, 0.5f);
    clients[w].request(1);
  }
  auto ref = reference(model, 0, *models::make_optimizer(opt), {{worker_sum(g, 0.5f), 0.5f}});
  for (int w = 0; w < 2; ++w) {
    while (!clients[w].ready())
      (*workers[w])
          ->receive([&](ps_msg& m) { clients[w].on_params(std::move(m)); },
                    caf::after(5s) >> [] { BOOST_FAIL("no parameters"); });
    std::vector<models::parameter*> ptrs;
    for (auto& p : params[w])
      ptrs.push_back(&p);
    clients[w].apply(ptrs);
    for (auto& p : params[w])
      BOOST_TEST(runtime::bitwise_equal(p.value, ref.at(p.name)), p.name);
    for (int s : clients[w].holders())
      BOOST_TEST(clients[w].versions()[static_cast<std::size_t>(s)] == 1);
  }
}

// ============================================================== messages

BOOST_FIXTURE_TEST_CASE(ps_messages_are_registered_and_round_trip, fixture) {
  for (const char* name : {"troupe::ps_msg", "troupe::ps_stats", "troupe::ps_descriptor"})
    BOOST_TEST(sys.types().make_value(name) != nullptr, name);
  auto x = values({1000}, 3.f);
  ps_msg m;
  m.kind = actors::ps_params;
  m.step = 12;
  m.worker = 3;
  m.stage = 2;
  m.shard = 1;
  m.version = 40;
  m.lr = 0.5f;
  m.scale = 0.25f;
  m.data = x;
  actors::ps_stats st;
  st.shard = 1;
  st.max_gap = 3;
  st.apply_seconds = 1.5;
  st.bytes_out = 77;
  auto msg = caf::make_message(m, st);
  std::vector<char> buf;
  caf::binary_serializer sink{sys, buf};
  BOOST_REQUIRE(!sink(msg));
  BOOST_TEST(buf.size() > x.nbytes()); // registered: the payload is there
  caf::message back;
  caf::binary_deserializer source{sys, buf};
  BOOST_REQUIRE(!source(back));
  BOOST_REQUIRE((back.match_elements<ps_msg, actors::ps_stats>()));
  const auto& b = back.get_as<ps_msg>(0);
  BOOST_TEST(b.kind == actors::ps_params);
  BOOST_TEST(b.step == 12);
  BOOST_TEST(b.worker == 3);
  BOOST_TEST(b.stage == 2);
  BOOST_TEST(b.shard == 1);
  BOOST_TEST(b.version == 40);
  BOOST_TEST(b.lr == 0.5f);
  BOOST_TEST(b.scale == 0.25f);
  BOOST_TEST(runtime::bitwise_equal(b.data, x));
  const auto& bs = back.get_as<actors::ps_stats>(1);
  BOOST_TEST(bs.max_gap == 3);
  BOOST_TEST(bs.apply_seconds == 1.5);
  BOOST_TEST(bs.bytes_out == 77u);
}

// ======================================================= two processes

namespace {

class node_config : public actors::system_config {
public:
  node_config() : actors::system_config(2) { load<caf::io::middleman>(); }
};

/// One "process": an actor system with middleman and a courier.
struct node {
  node_config cfg;
  caf::actor_system sys{cfg};
  std::shared_ptr<runtime::transport::courier> c;
  std::vector<caf::actor> keep; ///< local actors and proxies, released before the system

  node(const std::string& name, const runtime::transport::cluster_key& key) {
    runtime::transport::courier_options o;
    o.name = name;
    o.key = key;
    c = runtime::transport::courier::start(sys, o, "127.0.0.1");
  }
  ~node() {
    c->stop();
    for (auto& a : keep)
      if (a.node() == sys.node())
        caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
    keep.clear();
  }
  std::uint16_t publish(const caf::actor& a) {
    auto port = sys.middleman().publish(a, 0, "127.0.0.1");
    BOOST_REQUIRE_MESSAGE(port, "publish failed");
    return *port;
  }
  caf::actor remote(std::uint16_t port) {
    auto a = sys.middleman().remote_actor("127.0.0.1", port);
    BOOST_REQUIRE_MESSAGE(a, "remote_actor failed");
    keep.push_back(*a);
    return *a;
  }
};

/// `from` learns `to`'s courier (data plane up when this returns).
void introduce(node& from, node& to) {
  auto endpoint = from.remote(to.publish(to.c->endpoint()));
  auto up = std::make_shared<std::promise<std::optional<std::string>>>();
  auto fut = up->get_future();
  from.c->add_peer(to.c->name(), "127.0.0.1", to.c->port(), endpoint,
                   [up](std::optional<std::string> e) { up->set_value(std::move(e)); });
  BOOST_REQUIRE(fut.wait_for(5s) == std::future_status::ready);
  auto err = fut.get();
  BOOST_REQUIRE_MESSAGE(!err, "add_peer failed: " << err.value_or(""));
}

} // namespace

BOOST_AUTO_TEST_CASE(push_and_pull_cross_processes_over_the_data_plane) {
  // 128 x 256 weights: 128 KiB of f32, above the courier's 64 KiB threshold.
  auto spec = models::model_builder("big").input({128}).dense(128, 256).build();
  std::vector<ps_param_info> infos{{"0.weight", 0, 128 * 256}, {"0.bias", 0, 256}};
  auto a = assign_parameters(infos, 1, 1 << 30);
  auto key = runtime::transport::generate_key();
  node worker_node{"worker", key};
  node ps_node{"ps", key};
  introduce(worker_node, ps_node);
  introduce(ps_node, worker_node);
  ps_shard_config c;
  c.assignment = a;
  c.workers = 1;
  c.optimizer = {{"type", "sgd"}, {"lr", 0.1}};
  c.model = spec;
  c.seed = 3;
  c.courier = ps_node.c;
  auto shard = spawn_ps_shard(ps_node.sys, c);
  ps_node.keep.push_back(shard);
  auto remote_shard = worker_node.remote(ps_node.publish(shard));
  {
    caf::scoped_actor self{worker_node.sys};
    ps_client client{0, 0, a, {remote_shard}, worker_node.c, caf::actor_cast<caf::actor>(self)};
    auto layers = models::instantiate(spec, 0, 1, 3);
    auto ps = layers[0]->parameters();
    std::vector<models::parameter*> ptrs;
    for (auto& p : ps) {
      p.grad = values(p.value.shape(), 0.7f);
      p.grad_fresh = false;
      ptrs.push_back(&p);
    }
    // The reference: SGD on this side.
    std::vector<models::parameter> copy;
    for (auto& p : ps)
      copy.push_back({p.name, p.value.clone(), p.grad, false, p.decay});
    std::vector<models::parameter*> copy_ptrs;
    for (auto& p : copy)
      copy_ptrs.push_back(&p);
    models::make_optimizer(c.optimizer)->step(copy_ptrs, 0.1f);
    client.push(0, ptrs, 0.1f, 1.f);
    client.request(1);
    while (!client.ready())
      self->receive([&](ps_msg& m) { client.on_params(std::move(m)); },
                    caf::after(10s) >> [] { BOOST_FAIL("no parameters from the remote shard"); });
    client.apply(ptrs);
    for (std::size_t i = 0; i < copy.size(); ++i)
      BOOST_TEST(runtime::bitwise_equal(ps[i].value, copy[i].value), copy[i].name);
  }
  // Both directions took the data plane.
  BOOST_TEST(worker_node.c->dataplane_counters().messages == 1u);
  BOOST_TEST(ps_node.c->dataplane_counters().messages == 1u);
  BOOST_TEST(worker_node.c->unmatched_transfers() == 0u);
  BOOST_TEST(ps_node.c->unmatched_transfers() == 0u);
}
