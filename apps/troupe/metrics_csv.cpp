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

} // namespace

void write_metrics_csv(const std::string& file, const nlohmann::json& report) {
  static const nlohmann::json fixed = {"step", "epoch",        "loss",
                                       "lr",   "step_seconds", "samples_per_second"};
  const auto m = report.value("step_metrics", nlohmann::json::object());
  const auto& columns = m.contains("columns") ? m.at("columns") : fixed;
  std::string text;
  for (std::size_t i = 0; i < columns.size(); ++i) {
    text += i ? "," : "";
    text += columns[i].get<std::string>();
  }
  text += '\n';
  for (const auto& row : m.value("rows", nlohmann::json::array())) {
    for (std::size_t i = 0; i < row.size(); ++i) {
      text += i ? "," : "";
      text += field(row[i]);
    }
    text += '\n';
  }
  runtime::write_file_atomically(file, runtime::string_bytes(text));
}

} // namespace troupe::apps
