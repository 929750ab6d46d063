#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace troupe::runtime {

/// Element type of a tensor. The numeric values are part of the wire format and
/// the checkpoint format: append only, never renumber.
enum class dtype : std::uint8_t { f32 = 0, f64 = 1, i32 = 2, i64 = 3, u8 = 4 };

inline constexpr std::uint8_t dtype_count = 5;

constexpr std::size_t element_size(dtype t) noexcept {
  switch (t) {
    case dtype::f32: return 4;
    case dtype::f64: return 8;
    case dtype::i32: return 4;
    case dtype::i64: return 8;
    case dtype::u8: return 1;
  }
  return 0;
}

constexpr std::string_view to_string(dtype t) noexcept {
  switch (t) {
    case dtype::f32: return "f32";
    case dtype::f64: return "f64";
    case dtype::i32: return "i32";
    case dtype::i64: return "i64";
    case dtype::u8: return "u8";
  }
  return "?";
}

/// Parses the names printed by to_string; nullopt for anything else.
std::optional<dtype> parse_dtype(std::string_view s) noexcept;

/// Accepts only the wire values of known dtypes (used when decoding bytes).
constexpr std::optional<dtype> dtype_from_wire(std::uint8_t v) noexcept {
  if (v < dtype_count)
    return static_cast<dtype>(v);
  return std::nullopt;
}

template <class T>
struct dtype_of;
template <>
struct dtype_of<float> {
  static constexpr dtype value = dtype::f32;
};
template <>
struct dtype_of<double> {
  static constexpr dtype value = dtype::f64;
};
template <>
struct dtype_of<std::int32_t> {
  static constexpr dtype value = dtype::i32;
};
template <>
struct dtype_of<std::int64_t> {
  static constexpr dtype value = dtype::i64;
};
template <>
struct dtype_of<std::uint8_t> {
  static constexpr dtype value = dtype::u8;
};
template <class T>
inline constexpr dtype dtype_v = dtype_of<T>::value;

} // namespace troupe::runtime
