#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <span>
#include <string_view>
#include <vector>

#include "runtime/tensor.hpp"

namespace troupe::runtime {

/// Largest .npy header (the Python dict literal) accepted: a file cannot make the
/// reader allocate more than this before it is validated. NumPy writes ~128 bytes.
inline constexpr std::size_t npy_max_header_bytes = 65536;

/// Reads up to n bytes into dst; fewer only at the end of the source. Lets one
/// reader serve a file and a (decompressing) zip member alike.
using npy_read_fn = std::function<std::size_t(void* dst, std::size_t n)>;

/// Reads one NumPy .npy image
/// (https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html) of exactly
/// `total_bytes` bytes from `read`: magic "\x93NUMPY", version 1.0, 2.0 or 3.0, then the header
/// dict {'descr', 'fortran_order', 'shape'}, then the row-major data.
///
/// Dtypes (little-endian): '|u1' and '|b1' -> u8, '<i4' -> i32, '<i8' -> i64, '<f4' -> f32,
/// '<f8' -> f64, '<f2' -> f32 (widened exactly: there is no f16 tensor). Any rank.
/// The data size implied by the header must equal what `total_bytes` leaves after the
/// header, checked before anything is allocated.
///
/// Throws input_error naming `source` and the problem: wrong magic, unknown version,
/// malformed header, big-endian or unsupported dtype (by its NumPy name), fortran_order
/// True, truncated data or trailing bytes, read errors.
tensor read_npy_stream(const npy_read_fn& read, std::uint64_t total_bytes, std::string_view source);

/// read_npy_stream over bytes held in memory.
tensor parse_npy(std::span<const std::byte> bytes, std::string_view source = "<memory>");

/// Reads a .npy file (straight into the tensor). Throws input_error naming the file.
tensor read_npy(const std::filesystem::path& path);

/// The .npy image (version 1.0, what np.save writes) of a CPU tensor of any dtype;
/// for predictions written for NumPy users, and for tests.
std::vector<std::byte> to_npy_bytes(const tensor& t);

/// Writes to_npy_bytes(t) to `path` atomically. Throws input_error when it cannot.
void write_npy(const std::filesystem::path& path, const tensor& t);

} // namespace troupe::runtime
