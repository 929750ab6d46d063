#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "runtime/tensor.hpp"

namespace troupe::runtime {

/// The contents of a safetensors file (https://huggingface.co/docs/safetensors):
/// named tensors, sorted by name, and the optional string metadata. Half-precision
/// tensors (F16, BF16) are widened to f32 when read (exactly): the tensor types have
/// no f16, and writing always uses the tensors' own dtypes.
///
/// The format is what checkpoints and exported weights use, so files written by
/// Python's `safetensors` load here and ours load there. Layout: an 8-byte
/// little-endian header length N, N bytes of JSON header
/// {"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}},
/// then the byte buffer the offsets point into (row-major, little-endian).
struct safetensors_file {
  std::vector<std::pair<std::string, tensor>> tensors;
  std::map<std::string, std::string> metadata;

  /// The tensor called `name`; throws std::out_of_range when there is none.
  const tensor& at(std::string_view name) const;
};

/// Largest JSON header accepted when reading (the Python implementation's cap):
/// a file cannot make the reader allocate more than this before it is validated.
inline constexpr std::uint64_t safetensors_max_header_bytes = 100'000'000;

/// Safetensors' dtype names ("F32", "F64", "I32", "I64", "U8").
std::string_view safetensors_dtype_name(dtype t) noexcept;

/// The 8-byte length prefix and the JSON header (padded with spaces to a multiple
/// of 8 bytes) for `tensors`, in sorted-name order with offsets assigned in that
/// order; the tensors' bytes follow it in the same order. Exposed so the data
/// plane can send a header and then the storages with a gather write.
/// Throws std::invalid_argument for an undefined or non-CPU tensor, a duplicate
/// name, the reserved name "__metadata__", or a name that is not UTF-8.
std::string safetensors_header(std::span<const std::pair<std::string, tensor>> tensors,
                               const std::map<std::string, std::string>& metadata = {});

/// The whole file as bytes (header then tensor bytes), for tests and messages.
std::vector<std::byte>
to_safetensors_bytes(std::span<const std::pair<std::string, tensor>> tensors,
                     const std::map<std::string, std::string>& metadata = {});

/// Writes `tensors` to `path` atomically (write_file_atomically), with a scatter
/// write straight from the tensors' storages: no copy of the tensor bytes.
/// Identical inputs give identical bytes. Throws as safetensors_header does, and
/// input_error when the file cannot be written.
void write_safetensors(const std::filesystem::path& path,
                       std::span<const std::pair<std::string, tensor>> tensors,
                       const std::map<std::string, std::string>& metadata = {});

/// Parses a safetensors image held in memory. Everything is validated before any
/// tensor is allocated: sizes, header length (<= the bytes present and <= the
/// cap), JSON syntax, no duplicate names or fields, known dtypes, non-negative
/// shapes whose byte size matches the offsets (with overflow checks), offsets
/// inside the buffer, non-overlapping and covering it exactly. Throws
/// input_error naming `source` (a file name or a peer) and the offending tensor
/// or field.
safetensors_file parse_safetensors(std::span<const std::byte> bytes,
                                   std::string_view source = "<memory>");

/// Reads and validates a safetensors file the same way, reading each tensor
/// straight into its own storage (the file is never held in memory twice).
/// Throws input_error naming the file.
safetensors_file read_safetensors(const std::filesystem::path& path);

} // namespace troupe::runtime
