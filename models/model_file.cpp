#include "models/model_file.hpp"

#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "runtime/error.hpp"

namespace troupe::models {

bool is_model_file(const std::string& value) {
  const std::string ext = ".json";
  if (value.size() >= ext.size() && value.compare(value.size() - ext.size(), ext.size(), ext) == 0)
    return true;
  return value.find('/') != std::string::npos;
}

model_spec read_model_file(const std::string& file) {
  const std::string where = "--model " + file + ": ";
  std::error_code ec;
  if (std::filesystem::is_directory(file, ec))
    throw runtime::input_error(where + "is a directory, not a model spec file");
  std::ifstream in{file};
  if (!in)
    throw runtime::input_error(where + "cannot open the model spec file");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw runtime::input_error(where + "not JSON: " + e.what());
  }
  try {
    return model_spec::from_json(j);
  } catch (const std::invalid_argument& e) {
    throw runtime::input_error(where + e.what());
  }
}

} // namespace troupe::models
