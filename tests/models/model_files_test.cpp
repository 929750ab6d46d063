// Model specs from files: data/models' Keras specs are the zoo models (so they
// train like them), docs/models.md documents every registered layer type and
// its JSON examples are valid specs, and read_model_file's errors name the
// file and the field.

#define BOOST_TEST_DYN_LINK
#define BOOST_TEST_MODULE models_model_files
#include <boost/test/unit_test.hpp>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>

#include "models/layers/layer_registry.hpp"
#include "models/model_file.hpp"
#include "models/zoo.hpp"
#include "runtime/error.hpp"

using namespace troupe;
using namespace troupe::models;

namespace {

const std::filesystem::path source{TROUPE_SOURCE_DIR};

std::string read_text(const std::filesystem::path& p) {
  std::ifstream in{p};
  BOOST_REQUIRE_MESSAGE(in, "cannot open " << p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

/// The spec without its name: what decides how a model trains.
nlohmann::json unnamed(const model_spec& s) {
  auto j = s.to_json();
  j.erase("name");
  return j;
}

} // namespace

BOOST_AUTO_TEST_CASE(keras_files_are_the_zoo_models) {
  for (auto [file, zoo] :
       {std::pair{"keras_mlp.json", "mlp"}, std::pair{"keras_cnn.json", "cnn"}}) {
    const auto path = (source / "data/models" / file).string();
    BOOST_TEST_REQUIRE(is_model_file(path));
    const auto spec = read_model_file(path);
    BOOST_TEST(unnamed(spec) == unnamed(zoo_model(zoo)), file << " equals zoo model " << zoo);
  }
  BOOST_TEST(!is_model_file("mlp"));
  BOOST_TEST(is_model_file("mine.json"));
}

BOOST_AUTO_TEST_CASE(docs_name_every_registered_layer_type) {
  const auto doc = read_text(source / "docs/models.md");
  const auto types = layer_types();
  BOOST_TEST_REQUIRE(types.size() >= 12u);
  for (const auto& t : types)
    BOOST_TEST(doc.find("\n### `" + t + "`\n") != std::string::npos,
               "docs/models.md has no '### `" << t << "`' section for registered layer type " << t);
}

BOOST_AUTO_TEST_CASE(docs_json_examples_are_valid_specs) {
  const auto doc = read_text(source / "docs/models.md");
  const std::regex block{"```json\n([^`]*)```"};
  int specs = 0;
  for (auto it = std::sregex_iterator(doc.begin(), doc.end(), block); it != std::sregex_iterator();
       ++it) {
    const auto j = nlohmann::json::parse((*it)[1].str());
    if (j.contains("layers")) {
      BOOST_CHECK_NO_THROW(model_spec::from_json(j));
      ++specs;
    }
  }
  BOOST_TEST(specs >= 2);
}

BOOST_AUTO_TEST_CASE(file_errors_name_the_file_and_field) {
  const auto dir = std::filesystem::temp_directory_path() / "troupe-model-files-test";
  std::filesystem::create_directories(dir);
  auto expect = [&](const std::string& name, const std::string& text, const std::string& what) {
    const auto path = (dir / name).string();
    std::ofstream{path} << text;
    try {
      (void)read_model_file(path);
      BOOST_ERROR(name << ": no error");
    } catch (const runtime::input_error& e) {
      const std::string msg = e.what();
      BOOST_TEST(msg.find("--model " + path + ": ") == 0, msg);
      BOOST_TEST(msg.find(what) != std::string::npos, msg);
    }
  };
  expect("a.json", "{", "not JSON");
  expect("b.json", R"({"name": "m", "input_shape": [4], "layers": [{"type": "dense", "in": 4}]})",
         "layer 0 (dense): field 'out' is missing");
  expect("c.json", R"({"name": "m", "input_shape": [4], "layers": [{"type": "nope"}]})",
         "layer 0: unknown type 'nope'");
  expect("d.json", R"({"name": "m", "input_shape": [4], "layers": 3})", "field 'layers'");
  expect("e.json",
         R"({"name": "m", "input_shape": [4], "layers": [{"type": "dense", "in": 5, "out": 2}]})",
         "input shape [4] does not fit");
  BOOST_CHECK_EXCEPTION(read_model_file((dir / "absent.json").string()), runtime::input_error,
                        [](const runtime::input_error& e) {
                          return std::string{e.what()}.find("absent.json: cannot open") !=
                                 std::string::npos;
                        });
  std::filesystem::remove_all(dir);
}
