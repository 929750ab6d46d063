#pragma once

#include <cstddef>
#include <filesystem>

#include "runtime/tensor.hpp"

namespace troupe::runtime {

/// Largest IDX payload read_idx accepts by default (1 GiB): a header cannot make
/// the reader allocate more than this.
inline constexpr std::size_t idx_default_max_bytes = std::size_t{1} << 30;

/// Reads an IDX file (the MNIST format): big-endian u32 magic 0x0000TTNN (TT
/// element type; NN number of dimensions, 1..8), NN big-endian u32 extents, then
/// the raw row-major big-endian data. Gzip-compressed files (recognised by their
/// magic bytes, as the .gz files MNIST ships in) are decompressed while reading,
/// straight into the tensor, never past what the header implies. Returns a tensor
/// with the file's shape, its dtype by element type: 0x08 u8 -> u8; 0x09 i8,
/// 0x0B i16, 0x0C i32 -> i32 (widened: there are no narrower signed dtypes);
/// 0x0D f32 -> f32; 0x0E f64 -> f64. `max_bytes` bounds the data in the file.
///
/// Throws input_error naming the file and the problem: missing or unreadable,
/// truncated, wrong magic, unsupported element type, dimensions that overflow or
/// exceed `max_bytes`, trailing bytes (raw or after the gzip stream, or extra
/// decompressed data), corrupt gzip.
tensor read_idx(const std::filesystem::path& path, std::size_t max_bytes = idx_default_max_bytes);

/// One MNIST split: images [n, rows, cols] u8 and labels [n] u8 (values < 10).
struct mnist_split {
  tensor images;
  tensor labels;
};

/// Loads the training (`train`) or test split from `dir`, which holds
/// train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and
/// t10k-labels-idx1-ubyte, each raw or with a .gz suffix. Checks the ranks and
/// dtypes (u8), that image and label counts agree and that every label is < 10; throws
/// input_error otherwise.
mnist_split load_mnist(const std::filesystem::path& dir, bool train);

} // namespace troupe::runtime
