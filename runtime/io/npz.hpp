#pragma once

#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "runtime/tensor.hpp"

namespace troupe::runtime {

/// Arrays read from a NumPy .npz archive (np.savez / np.savez_compressed: a zip
/// archive whose members NAME.npy are .npy images), in archive order.
struct npz_file {
  std::vector<std::pair<std::string, tensor>> arrays;

  /// The array called `name`; throws std::out_of_range when there is none.
  const tensor& at(std::string_view name) const;
};

/// The array names in an .npz (member names less ".npy", archive order); members
/// that are not .npy files are skipped, as np.load lists them apart.
/// Throws input_error naming the file when it is not a readable zip archive.
std::vector<std::string> npz_array_names(const std::filesystem::path& path);

/// Reads the arrays `names` (all of them when empty) from an .npz, each
/// decompressed (stored or deflate) straight into its tensor and validated as
/// read_npy does. A member's declared size is checked against its compressed size
/// (deflate expands at most ~1032:1) before anything is allocated, and libzip
/// checks each member's CRC. Throws input_error naming the file and the array:
/// wrong magic (not a zip archive), corrupt or truncated archive, a missing
/// array (listing those present), and every .npy error.
npz_file read_npz(const std::filesystem::path& path, std::span<const std::string> names = {});

/// Writes `arrays` as an .npz that np.load reads (members NAME.npy), deflated
/// when `compress` (np.savez_compressed) or stored (np.savez). Throws
/// input_error naming the file when it cannot be written.
void write_npz(const std::filesystem::path& path,
               std::span<const std::pair<std::string, tensor>> arrays, bool compress = false);

} // namespace troupe::runtime
