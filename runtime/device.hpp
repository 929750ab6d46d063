#pragma once

#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace troupe::runtime {

enum class device_kind : std::uint8_t { cpu = 0, cuda = 1 };

/// Where a tensor lives or an actor computes: `cpu` or `cuda:N`. A small
/// immutable value type (as c10::Device); CPU devices carry index 0.
class device {
public:
  constexpr device() noexcept = default;

  static constexpr device cpu() noexcept { return device{device_kind::cpu, 0}; }
  static constexpr device cuda(std::int16_t index) noexcept {
    return device{device_kind::cuda, index};
  }

  constexpr device_kind kind() const noexcept { return kind_; }
  constexpr std::int16_t index() const noexcept { return index_; }
  constexpr bool is_cpu() const noexcept { return kind_ == device_kind::cpu; }
  constexpr bool is_cuda() const noexcept { return kind_ == device_kind::cuda; }

  friend constexpr auto operator<=>(const device&, const device&) = default;

private:
  constexpr device(device_kind k, std::int16_t i) noexcept : kind_(k), index_(i) {}
  device_kind kind_ = device_kind::cpu;
  std::int16_t index_ = 0;
};

std::string to_string(device d);

/// Parses "cpu", "cuda" (= cuda:0) and "cuda:N"; nullopt otherwise.
std::optional<device> parse_device(std::string_view s);

} // namespace troupe::runtime
