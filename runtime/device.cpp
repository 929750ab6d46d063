#include "runtime/device.hpp"

#include <charconv>

#include "runtime/dtype.hpp"

namespace troupe::runtime {

std::string to_string(device d) {
  if (d.is_cpu())
    return "cpu";
  return "cuda:" + std::to_string(d.index());
}

std::optional<device> parse_device(std::string_view s) {
  if (s == "cpu")
    return device::cpu();
  if (s == "cuda")
    return device::cuda(0);
  if (s.starts_with("cuda:")) {
    auto digits = s.substr(5);
    int v = -1;
    auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
    if (ec == std::errc{} && ptr == digits.data() + digits.size() && v >= 0 && v < 1024)
      return device::cuda(static_cast<std::int16_t>(v));
  }
  return std::nullopt;
}

std::optional<dtype> parse_dtype(std::string_view s) noexcept {
  for (std::uint8_t i = 0; i < dtype_count; ++i) {
    auto t = static_cast<dtype>(i);
    if (to_string(t) == s)
      return t;
  }
  return std::nullopt;
}

} // namespace troupe::runtime
