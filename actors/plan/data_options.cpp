#include "actors/plan/data_options.hpp"

#include <charconv>
#include <cmath>

#include "runtime/error.hpp"

namespace troupe::actors {

std::string_view to_string(loss_kind k) {
  switch (k) {
  case loss_kind::cross_entropy:
    return "cross_entropy";
  case loss_kind::mse:
    return "mse";
  case loss_kind::sequence:
    return "sequence";
  case loss_kind::automatic:
    break;
  }
  return "auto";
}

loss_kind parse_loss_kind(std::string_view s) {
  for (auto k :
       {loss_kind::automatic, loss_kind::cross_entropy, loss_kind::mse, loss_kind::sequence})
    if (s == to_string(k))
      return k;
  throw runtime::input_error("--loss must be cross_entropy, mse, sequence or auto, got '" +
                             std::string{s} + "'");
}

std::string_view to_string(data_source s) {
  return s == data_source::nodes ? "nodes" : "supervisor";
}

data_source parse_data_source(std::string_view s) {
  for (auto k : {data_source::nodes, data_source::supervisor})
    if (s == to_string(k))
      return k;
  throw runtime::input_error("--data-from must be nodes or supervisor, got '" + std::string{s} +
                             "'");
}

namespace {

/// The whole of `s` as a finite number, or nothing.
std::optional<double> number(std::string_view s) {
  double v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || end != s.data() + s.size() || !std::isfinite(v))
    return std::nullopt;
  return v;
}

} // namespace

normalize_spec parse_normalize(const std::string& text) {
  normalize_spec n;
  if (text.empty())
    return n;
  if (text == "none") {
    n.how = normalize_spec::kind::none;
    return n;
  }
  if (text == "auto") {
    n.how = normalize_spec::kind::automatic;
    return n;
  }
  const auto bad = [&](const std::string& why) {
    return runtime::input_error("--normalize '" + text + "': " + why +
                                " (expected none, auto, a divisor such as 255, or MEAN,STD)");
  };
  if (auto comma = text.find(','); comma != std::string::npos) {
    auto mean = number(std::string_view{text}.substr(0, comma));
    auto sd = number(std::string_view{text}.substr(comma + 1));
    if (!mean || !sd)
      throw bad("MEAN and STD must be numbers");
    if (!(*sd > 0))
      throw bad("STD must be positive");
    n.how = normalize_spec::kind::given;
    n.mean = *mean;
    n.std = *sd;
    return n;
  }
  auto d = number(text);
  if (!d)
    throw bad("not a number");
  if (!(*d > 0))
    throw bad("the divisor must be positive");
  n.how = normalize_spec::kind::divide;
  n.divisor = *d;
  return n;
}

} // namespace troupe::actors
