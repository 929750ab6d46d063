// Model specs: JSON round trips, rejection of bad specs with messages that
// name the problem, the layer registry, the zoo, and initialisation that does
// not depend on how the model is split.

#define BOOST_TEST_DYN_LINK
#define BOOST_TEST_MODULE models_spec
#include <boost/test/unit_test.hpp>

#include <cmath>

#include "models/layers/layer_registry.hpp"
#include "models/layers/model_spec.hpp"
#include "models/layers/sequential.hpp"
#include "models/zoo.hpp"

using namespace troupe;
using namespace troupe::models;
using json = nlohmann::json;

namespace {

/// Expects `f` to throw std::invalid_argument whose message contains every
/// string of `parts`.
template <class F>
void expect_error(F&& f, std::initializer_list<std::string> parts) {
  try {
    f();
    BOOST_ERROR("no exception; expected one mentioning " << *parts.begin());
  } catch (const std::invalid_argument& e) {
    std::string msg = e.what();
    BOOST_TEST_MESSAGE("rejected: " << msg);
    for (const auto& p : parts)
      BOOST_TEST(msg.find(p) != std::string::npos, "'" << msg << "' lacks '" << p << "'");
  }
}

json mlp_json() {
  return json::parse(R"({"name": "m", "input_shape": [8], "input_dtype": "f32", "layers": [
    {"type": "dense", "in": 8, "out": 4}, {"type": "relu"}, {"type": "dense", "in": 4, "out": 2}]})");
}

json with_layer(json layer, json input_shape = json::array({8})) {
  json j = {{"name", "bad"}, {"input_shape", input_shape}, {"layers", json::array({layer})}};
  return j;
}

model_spec every_layer_spec() {
  return model_builder("all")
      .input({6}, runtime::dtype::i32)
      .embedding(20, 8)    // [6, 8]
      .layer_norm(8, 1e-6) // [6, 8]
      .dropout(0.1)
      .gelu()
      .flatten()     // [48]
      .dense(48, 72) // [72]
      .add({{"type", "relu"}})
      .build();
}

} // namespace

BOOST_AUTO_TEST_CASE(json_round_trip) {
  for (const auto& name : zoo_names()) {
    auto spec = zoo_model(name);
    json j = spec;
    auto back = j.get<model_spec>();
    BOOST_TEST((back == spec));
    BOOST_TEST(json(back).dump() == j.dump());
    BOOST_TEST((model_spec::from_json(json::parse(j.dump())) == spec));
  }
  auto all = every_layer_spec();
  BOOST_TEST((model_spec::from_json(all.to_json()) == all));
  BOOST_TEST(all.to_json()["input_dtype"] == "i32");
  BOOST_TEST(output_shape(all) == (shape_t{72}));
}

BOOST_AUTO_TEST_CASE(from_json_fills_defaults) {
  json j = with_layer({{"type", "conv2d"}, {"in_channels", 1}, {"out_channels", 2}, {"kernel", 3}},
                      {1, 5, 5});
  j["layers"].push_back({{"type", "maxpool2d"}, {"kernel", 3}});
  auto s = model_spec::from_json(j);
  BOOST_TEST(s.layers[0]["stride"] == 1);
  BOOST_TEST(s.layers[0]["padding"] == 0);
  BOOST_TEST(s.layers[1]["stride"] == 3);
  BOOST_TEST((s.input_dtype == runtime::dtype::f32));
  auto shapes = activation_shapes(s);
  BOOST_REQUIRE(shapes.size() == 3u);
  BOOST_TEST(shapes[1] == (shape_t{2, 3, 3}));
  BOOST_TEST(shapes[2] == (shape_t{2, 1, 1}));
}

BOOST_AUTO_TEST_CASE(bad_specs_are_rejected_with_names) {
  auto parse = [](json j) { return [j] { model_spec::from_json(j); }; };
  json j = mlp_json();
  j["layers"][1] = {{"type", "dense2"}};
  expect_error(parse(j), {"layer 1", "unknown type 'dense2'", "dense"});
  j = mlp_json();
  j["layers"][2].erase("out");
  expect_error(parse(j), {"layer 2", "'out'", "missing"});
  j = mlp_json();
  j["layers"][0]["in"] = "8";
  expect_error(parse(j), {"layer 0", "'in'", "integer"});
  j = mlp_json();
  j["layers"][0]["in"] = 8.5;
  expect_error(parse(j), {"layer 0", "'in'", "integer"});
  j = mlp_json();
  j["layers"][0]["out"] = 0;
  expect_error(parse(j), {"layer 0", "'out'", ">= 1"});
  j = mlp_json();
  j["layers"][1]["slope"] = 0.1;
  expect_error(parse(j), {"layer 1", "unknown field 'slope'"});
  j = mlp_json();
  j["layers"][2]["in"] = 5; // does not match the 4 outputs of layer 0
  expect_error(parse(j), {"layer 2", "dense", "[4]"});
  j = mlp_json();
  j["layers"][1] = "relu";
  expect_error(parse(j), {"layer 1", "object"});
  j = mlp_json();
  j["layers"][0].erase("type");
  expect_error(parse(j), {"layer 0", "'type'"});

  expect_error(parse(with_layer({{"type", "dropout"}, {"p", 1.5}})), {"layer 0", "'p'"});
  expect_error(parse(with_layer({{"type", "dropout"}, {"p", "half"}})),
               {"layer 0", "'p'", "number"});
  expect_error(parse(with_layer({{"type", "layer_norm"}, {"dim", 8}, {"eps", 0}})),
               {"layer 0", "'eps'"});
  expect_error(
      parse(with_layer({{"type", "conv2d"}, {"in_channels", 1}, {"out_channels", 2}, {"kernel", 0}},
                       {1, 5, 5})),
      {"layer 0", "'kernel'"});
  expect_error(
      parse(with_layer({{"type", "conv2d"}, {"in_channels", 3}, {"out_channels", 2}, {"kernel", 3}},
                       {1, 5, 5})),
      {"layer 0", "conv2d", "[1, 5, 5]"});
  expect_error(parse(with_layer({{"type", "maxpool2d"}, {"kernel", 2}, {"stride", -1}}, {1, 4, 4})),
               {"layer 0", "'stride'"});
  expect_error(parse(with_layer({{"type", "embedding"}, {"vocab", 10}, {"dim", 4}})),
               {"layer 0", "embedding", "i32"});
  json ids = with_layer({{"type", "relu"}});
  ids["input_dtype"] = "i32";
  expect_error(parse(ids), {"layer 0", "relu", "f32"});

  j = mlp_json();
  j["input_shape"] = {0};
  expect_error(parse(j), {"input_shape"});
  j = mlp_json();
  j["input_dtype"] = "f16";
  expect_error(parse(j), {"input_dtype", "f16"});
  j = mlp_json();
  j["layers"] = {{"type", "relu"}};
  j["layers"] = "relu";
  expect_error(parse(j), {"layers"});
  j = mlp_json();
  j.erase("name");
  expect_error(parse(j), {"name"});
  j = mlp_json();
  j["optimizer"] = "sgd";
  expect_error(parse(j), {"unknown field 'optimizer'"});

  expect_error([] { model_builder("b").input({3}).dense(4, 2).build(); }, {"layer 0", "[3]"});
  auto good = model_spec::from_json(mlp_json());
  expect_error([&] { instantiate(good, 2, 4, 0); }, {"[2, 4)"});
  expect_error([] { zoo_model("resnet"); }, {"resnet", "mlp", "cnn"});
}

BOOST_AUTO_TEST_CASE(registry_round_trips_every_type) {
  auto types = layer_types();
  for (const char* t : {"dense", "relu", "gelu", "conv2d", "maxpool2d", "flatten", "dropout",
                        "layer_norm", "embedding"})
    BOOST_TEST((std::find(types.begin(), types.end(), t) != types.end()), t);
  std::vector<json> specs = {
      {{"type", "dense"}, {"in", 3}, {"out", 2}},
      {{"type", "relu"}},
      {{"type", "gelu"}},
      {{"type", "conv2d"},
       {"in_channels", 2},
       {"out_channels", 4},
       {"kernel", 3},
       {"stride", 2},
       {"padding", 1}},
      {{"type", "maxpool2d"}, {"kernel", 3}, {"stride", 2}},
      {{"type", "flatten"}},
      {{"type", "dropout"}, {"p", 0.25}},
      {{"type", "layer_norm"}, {"dim", 7}, {"eps", 1e-6}},
      {{"type", "embedding"}, {"vocab", 11}, {"dim", 5}},
  };
  for (const auto& s : specs) {
    auto l = make_layer(s, 4);
    BOOST_TEST(l->spec() == s, s.dump());
    BOOST_TEST(l->kind() == s["type"].get<std::string>());
    for (auto& p : l->parameters())
      BOOST_TEST(p.name.rfind("4.", 0) == 0u, p.name);
  }
}

BOOST_AUTO_TEST_CASE(zoo_models) {
  auto names = zoo_names();
  BOOST_TEST(names.size() == 4u);
  auto even = zoo_model("mlp_even");
  BOOST_TEST(even.layers.size() == 17u);
  BOOST_TEST(output_shape(even) == (shape_t{10}));
  auto mlp = zoo_model("mlp");
  BOOST_TEST(mlp.input_shape == (shape_t{784}));
  BOOST_TEST(output_shape(mlp) == (shape_t{10}));
  sequential m(mlp, 0, mlp.layers.size(), 0);
  BOOST_TEST(m.parameter_count() == 784 * 1024 + 1024 + 1024 * 512 + 512 + 512 * 10 + 10);
  std::vector<std::string> expected = {"0.weight", "0.bias",   "2.weight",
                                       "2.bias",   "4.weight", "4.bias"};
  auto ps = m.parameters();
  BOOST_REQUIRE(ps.size() == expected.size());
  for (std::size_t i = 0; i < ps.size(); ++i)
    BOOST_TEST(ps[i]->name == expected[i]);
  BOOST_TEST(ps[0]->value.shape() == (shape_t{1024, 784})); // torch.nn.Linear layout
  BOOST_TEST(ps[0]->decay);
  BOOST_TEST(!ps[1]->decay);

  auto cnn = zoo_model("cnn");
  BOOST_TEST(output_shape(cnn) == (shape_t{10}));
  auto counts = layer_parameter_counts(cnn);
  BOOST_TEST(counts[0] == 32 * 9 + 32);
  BOOST_TEST(counts[3] == 21632 * 128 + 128);
  auto flops = layer_flops(cnn);
  BOOST_TEST(flops[0] == 2.0 * 9 * 32 * 26 * 26);
}

BOOST_AUTO_TEST_CASE(init_does_not_depend_on_the_split) {
  auto spec = model_builder("split")
                  .input({6})
                  .dense(6, 8)
                  .relu()
                  .dense(8, 8)
                  .layer_norm(8)
                  .dense(8, 3)
                  .build();
  sequential whole(spec, 0, 5, 1234), a(spec, 0, 2, 1234), b(spec, 2, 5, 1234);
  auto w = whole.named_parameters();
  std::size_t seen = 0;
  for (auto* part : {&a, &b})
    for (auto& [name, p] : part->named_parameters()) {
      BOOST_TEST(runtime::bitwise_equal(p->value, w.at(name)->value), name);
      ++seen;
    }
  BOOST_TEST(seen == w.size());
  BOOST_TEST(b.find_parameter("2.weight") != nullptr);
  // Another seed gives other values; the same seed the same ones again.
  sequential other(spec, 0, 5, 1235), again(spec, 0, 5, 1234);
  BOOST_TEST(
      !runtime::bitwise_equal(other.find_parameter("0.weight")->value, w["0.weight"]->value));
  BOOST_TEST(runtime::bitwise_equal(again.find_parameter("4.bias")->value, w["4.bias"]->value));
}

BOOST_AUTO_TEST_CASE(init_distributions_match_pytorch_defaults) {
  auto spec = model_builder("dist")
                  .input({4}, runtime::dtype::i32)
                  .embedding(1000, 16)
                  .layer_norm(16)
                  .flatten()
                  .dense(64, 400)
                  .build();
  sequential s(spec, 0, 4, 7);
  // Embedding: N(0, 1).
  auto emb = s.find_parameter("0.weight")->value.values<float>();
  double sum = 0, sq = 0;
  for (float v : emb) {
    sum += v;
    sq += double(v) * v;
  }
  double mean = sum / emb.size(), var = sq / emb.size() - mean * mean;
  BOOST_TEST(std::abs(mean) < 0.03);
  BOOST_TEST(std::abs(std::sqrt(var) - 1.0) < 0.03);
  // LayerNorm: gamma 1, beta 0.
  for (float v : s.find_parameter("1.weight")->value.values<float>())
    BOOST_TEST(v == 1.f);
  for (float v : s.find_parameter("1.bias")->value.values<float>())
    BOOST_TEST(v == 0.f);
  // Linear: U(-1/sqrt(in), 1/sqrt(in)) for weight and bias (in = 64: bound 1/8).
  for (const char* n : {"3.weight", "3.bias"}) {
    auto v = s.find_parameter(n)->value.values<float>();
    float lo = 1, hi = -1;
    for (float x : v) {
      lo = std::min(lo, x);
      hi = std::max(hi, x);
    }
    BOOST_TEST(lo >= -0.125f);
    BOOST_TEST(hi < 0.125f);
    BOOST_TEST(lo < -0.12f); // the range is actually used
    BOOST_TEST(hi > 0.12f);
  }
}
