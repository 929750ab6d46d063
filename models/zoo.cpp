#include "models/zoo.hpp"

#include <stdexcept>

namespace troupe::models {

std::vector<std::string> zoo_names() {
  return {"mlp", "cnn"};
}

model_spec zoo_model(std::string_view name) {
  if (name == "mlp")
    return model_builder("mlp")
        .input({784})
        .dense(784, 1024)
        .relu()
        .dense(1024, 512)
        .relu()
        .dense(512, 10)
        .build();
  if (name == "cnn")
    return model_builder("cnn")
        .input({1, 28, 28})
        .conv2d(1, 32, 3)
        .relu()
        .flatten()
        .dense(32 * 26 * 26, 128)
        .relu()
        .dense(128, 10)
        .build();
  std::string known;
  for (const auto& n : zoo_names())
    known += (known.empty() ? "" : ", ") + n;
  throw std::invalid_argument("unknown model '" + std::string{name} + "' (known: " + known + ")");
}

} // namespace troupe::models
