#include "apps/troupe/metrics_csv.hpp"

#include <fmt/format.h>

#include "runtime/io/file_util.hpp"

namespace troupe::apps {

namespace {

std::string field(const nlohmann::json& v) {
  if (v.is_null())
    return {};
  if (v.is_number_integer())
    return std::to_string(v.get<std::int64_t>());
  if (v.is_number())
    return fmt::format("{:.6g}", v.get<double>());
  return v.is_string() ? v.get<std::string>() : v.dump();
}

/// Row i of column `name` of the series, or null.
nlohmann::json at(const nlohmann::json& series, const char* name, std::size_t i) {
  auto c = series.find(name);
  return c != series.end() && c->is_array() && i < c->size() ? (*c)[i] : nlohmann::json{};
}

} // namespace

void write_metrics_csv(const std::string& file, const nlohmann::json& report) {
  const auto s = report.value("step_series", nlohmann::json::object());
  const bool accuracy = s.contains("train_accuracy");
  const auto busy = s.value("stage_busy", nlohmann::json::array());
  const auto per_epoch = std::max<std::int64_t>(1, report.value("steps_per_epoch", 1));
  std::string text = "step,steps,epoch,loss";
  text += accuracy ? ",train_accuracy" : "";
  text += ",lr,samples_per_second";
  for (std::size_t k = 0; k < busy.size(); ++k)
    text += fmt::format(",busy_stage{}", k);
  text += '\n';
  const auto points = s.value("step", nlohmann::json::array());
  for (std::size_t i = 0; i < points.size(); ++i) {
    const auto step = points[i].get<std::int64_t>();
    // fmt, not "," + string: GCC 12 reports a false -Wrestrict for that.
    text += fmt::format("{},{},{},{}", step, field(s.value("every", nlohmann::json(1))),
                        (step - 1) / per_epoch + 1, field(at(s, "loss", i)));
    if (accuracy)
      text += fmt::format(",{}", field(at(s, "train_accuracy", i)));
    text += fmt::format(",{},{}", field(at(s, "lr", i)), field(at(s, "samples_per_second", i)));
    for (const auto& stage : busy)
      text += fmt::format(",{}", field(i < stage.size() ? stage[i] : nlohmann::json{}));
    text += '\n';
  }
  runtime::write_file_atomically(file, runtime::string_bytes(text));
}

} // namespace troupe::apps
