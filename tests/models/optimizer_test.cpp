// Optimizers: state export/import continues bitwise like an uninterrupted run,
// an update made in parts equals one step,
// state validation, copy-on-write safety, config parsing.

#define BOOST_TEST_DYN_LINK
#define BOOST_TEST_MODULE models_optimizer
#include <boost/test/unit_test.hpp>

#include "models/train/optimizer.hpp"
#include "test_util.hpp"

using namespace troupe;
using namespace troupe::models;
using namespace troupe::models::test;
using json = nlohmann::json;

namespace {

std::vector<parameter> make_params() {
  std::vector<parameter> ps(3);
  ps[0].name = "0.weight";
  ps[0].value = random_tensor({3, 4}, 1);
  ps[1].name = "0.bias";
  ps[1].value = random_tensor({3}, 2);
  ps[1].decay = false;
  ps[2].name = "2.weight";
  ps[2].value = random_tensor({5, 3}, 3);
  return ps;
}

std::vector<parameter*> ptrs(std::vector<parameter>& ps) {
  std::vector<parameter*> v;
  for (auto& p : ps)
    v.push_back(&p);
  return v;
}

/// Deterministic gradients for step t, and a decaying learning rate.
void set_grads(std::vector<parameter>& ps, int t) {
  for (std::size_t i = 0; i < ps.size(); ++i)
    ps[i].grad = random_tensor(ps[i].value.shape(), 100 + 10 * static_cast<std::uint64_t>(t) + i);
}
float lr_at(float base, int t) {
  return base * (1.f - 0.05f * static_cast<float>(t));
}

void run_steps(optimizer& o, std::vector<parameter>& ps, int from, int to) {
  auto v = ptrs(ps);
  for (int t = from; t < to; ++t) {
    set_grads(ps, t);
    o.step(v, lr_at(o.lr(), t));
  }
}

const std::vector<json> configs = {
    json{{"type", "sgd"}, {"lr", 0.1}, {"momentum", 0.9}, {"weight_decay", 1e-2}},
    json{{"type", "sgd"}, {"lr", 0.1}},
    json{{"type", "adam"}, {"lr", 1e-2}, {"weight_decay", 1e-3}},
    json{{"type", "adamw"}, {"lr", 1e-2}, {"betas", {0.8, 0.99}}, {"eps", 1e-6}},
};

} // namespace

BOOST_AUTO_TEST_CASE(state_round_trip_continues_bitwise) {
  for (const auto& cfg : configs) {
    BOOST_TEST_CONTEXT(cfg.dump()) {
      auto ref_params = make_params();
      auto ref = make_optimizer(cfg);
      run_steps(*ref, ref_params, 0, 6);

      auto params = make_params();
      auto first = make_optimizer(cfg);
      run_steps(*first, params, 0, 3);
      // "Checkpoint": parameter values and optimizer state, then a fresh process.
      auto state = first->state();
      auto steps = first->steps();
      BOOST_TEST(steps == 3);
      std::vector<parameter> restored = make_params();
      for (std::size_t i = 0; i < restored.size(); ++i)
        restored[i].value = params[i].value.clone();
      auto second = make_optimizer(first->config());
      second->load_state(ptrs(restored), state, steps);
      BOOST_TEST(second->steps() == 3);
      run_steps(*second, restored, 3, 6);

      for (std::size_t i = 0; i < restored.size(); ++i)
        BOOST_TEST(runtime::bitwise_equal(restored[i].value, ref_params[i].value),
                   restored[i].name);
      auto a = second->state(), b = ref->state();
      BOOST_REQUIRE(a.size() == b.size());
      for (std::size_t i = 0; i < a.size(); ++i) {
        BOOST_TEST(a[i].first == b[i].first);
        BOOST_TEST(runtime::bitwise_equal(a[i].second, b[i].second), a[i].first);
      }
    }
  }
}

// A step's update made in parts (each layer's once its gradients are final,
// the optimizer folded into the backward) and counted once: bitwise step().
BOOST_AUTO_TEST_CASE(update_in_parts_equals_step) {
  for (const auto& cfg : configs) {
    BOOST_TEST_CONTEXT(cfg.dump()) {
      auto ref_params = make_params();
      auto ref = make_optimizer(cfg);
      run_steps(*ref, ref_params, 0, 4);

      auto params = make_params();
      auto parts = make_optimizer(cfg);
      for (int t = 0; t < 4; ++t) {
        set_grads(params, t);
        const float lr = lr_at(parts->lr(), t);
        parts->update(std::vector<parameter*>{&params[2]}, lr); // the backward's order
        parts->update(std::vector<parameter*>{&params[0], &params[1]}, lr);
        BOOST_TEST(parts->steps() == t);
        parts->count_step();
      }
      BOOST_TEST(parts->steps() == ref->steps());
      for (std::size_t i = 0; i < params.size(); ++i)
        BOOST_TEST(runtime::bitwise_equal(params[i].value, ref_params[i].value), params[i].name);
    }
  }
}

BOOST_AUTO_TEST_CASE(state_names) {
  auto ps = make_params();
  auto s = make_optimizer(configs[0]);
  run_steps(*s, ps, 0, 1);
  std::vector<std::string> names;
  for (auto& [n, t] : s->state())
    names.push_back(n);
  BOOST_TEST(names ==
                 (std::vector<std::string>{"0.bias.momentum_buffer", "0.weight.momentum_buffer",
                                           "2.weight.momentum_buffer"}),
             boost::test_tools::per_element());
  auto plain = make_optimizer(configs[1]);
  run_steps(*plain, ps, 0, 1);
  BOOST_TEST(plain->state().empty());
  auto a = make_optimizer(configs[2]);
  run_steps(*a, ps, 0, 2);
  BOOST_TEST(a->state().size() == 6u);
  BOOST_TEST(a->state()[0].first == "0.bias.exp_avg");
  BOOST_TEST(a->state()[1].first == "0.bias.exp_avg_sq");
  BOOST_TEST(a->steps() == 2);
}

BOOST_AUTO_TEST_CASE(load_state_validates) {
  auto ps = make_params();
  auto a = make_optimizer(configs[2]);
  run_steps(*a, ps, 0, 1);
  auto good = a->state();
  auto fresh = make_optimizer(configs[2]);
  auto expect = [&](named_tensors st, const std::string& part) {
    try {
      fresh->load_state(ptrs(ps), st, 1);
      BOOST_ERROR("accepted bad state; expected a message with " << part);
    } catch (const std::invalid_argument& e) {
      BOOST_TEST(std::string(e.what()).find(part) != std::string::npos, e.what());
    }
  };
  auto st = good;
  st[0].first = "9.weight.exp_avg";
  expect(st, "9.weight.exp_avg");
  st = good;
  st[0].first = "0.bias.momentum_buffer";
  expect(st, "momentum_buffer");
  st = good;
  st[2].second = random_tensor({4, 3}, 1); // 0.weight is [3, 4]
  expect(st, st[2].first);
  st = good;
  st[2].second = random_ids({3, 4}, 1, 3);
  expect(st, st[2].first);
  st = good;
  st.erase(st.begin() + 1); // 0.bias.exp_avg_sq
  expect(st, "0.bias.exp_avg_sq");
  st = good;
  st.push_back(st[0]);
  expect(st, st[0].first);
  // A failed load keeps the previous state.
  BOOST_TEST(fresh->state().empty());
  fresh->load_state(ptrs(ps), good, 1);
  BOOST_TEST(fresh->state().size() == good.size());
}

BOOST_AUTO_TEST_CASE(updates_copy_on_write_and_semantics) {
  auto ps = make_params();
  auto v = ptrs(ps);
  set_grads(ps, 0);
  tensor held = ps[0].value; // e.g. a checkpoint writer still reading it
  tensor before = ps[0].value.clone();
  auto s = make_optimizer(json{{"type", "sgd"}, {"lr", 0.5}});
  s->step(v, 0.5f);
  BOOST_TEST(runtime::bitwise_equal(held, before)); // the reader's copy is untouched
  BOOST_TEST(!ps[0].value.shares_storage_with(held));
  // Plain SGD: p - lr * g exactly.
  for (std::int64_t i = 0; i < before.numel(); ++i)
    BOOST_TEST(ps[0].value.data<float>()[i] ==
               before.data<float>()[i] - 0.5f * ps[0].grad.data<float>()[i]);
  // No gradient: skipped.
  ps[1].grad = {};
  tensor bias = ps[1].value;
  s->step(v, 0.5f);
  BOOST_TEST(ps[1].value.shares_storage_with(bias));
  // decay == false: no weight decay, with a zero gradient the bias stays put.
  auto wd = make_optimizer(json{{"type", "sgd"}, {"lr", 0.1}, {"weight_decay", 0.5}});
  ps[1].grad = tensor::zeros(runtime::dtype::f32, ps[1].value.shape());
  ps[0].grad = tensor::zeros(runtime::dtype::f32, ps[0].value.shape());
  tensor b0 = ps[1].value.clone(), w0 = ps[0].value.clone();
  wd->step(v, 0.1f);
  BOOST_TEST(runtime::bitwise_equal(ps[1].value, b0));
  BOOST_TEST(!runtime::bitwise_equal(ps[0].value, w0));
}

BOOST_AUTO_TEST_CASE(config_parsing) {
  auto a = make_optimizer(json{{"type", "adamw"}});
  BOOST_TEST(a->kind() == "adamw");
  BOOST_TEST(a->config()["weight_decay"].get<double>() == 0.01, boost::test_tools::tolerance(1e-6));
  BOOST_TEST(make_optimizer(json{{"type", "sgd"}})->lr() == 0.01f);
  BOOST_TEST(make_optimizer(json{{"type", "adam"}})->lr() == 1e-3f);
  for (const auto& bad :
       {json{{"type", "rmsprop"}}, json{{"lr", 0.1}}, json{{"type", "adam"}, {"momentum", 0.9}},
        json{{"type", "sgd"}, {"lr", -1}}, json{{"type", "sgd"}, {"lr", "fast"}},
        json{{"type", "adam"}, {"betas", {0.9}}}, json{{"type", "adam"}, {"betas", {0.9, 1.0}}},
        json{{"type", "adam"}, {"eps", 0}}, json("sgd")})
    BOOST_CHECK_THROW(make_optimizer(bad), std::invalid_argument);
}
