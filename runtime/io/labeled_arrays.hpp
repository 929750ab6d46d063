#pragma once

#include <filesystem>
#include <string>

#include "runtime/tensor.hpp"

namespace troupe::runtime {

/// Which arrays of a file are the inputs and the targets.
struct array_names {
  std::string x = "x"; ///< .npz/.safetensors: the inputs array; CSV: unused (every other column)
  std::string y = "y"; ///< .npz/.safetensors: the targets array; CSV: the target column's name
};

/// A data file's inputs and targets, one sample per row of each.
/// x: [N, ...] u8, i32 or f32 (f16 and f64 converted to f32, i64 to i32 when in range, else error;
/// IDX i8/i16 arrive as i32); a 1-D x becomes [N, 1]. CSV: f32 [N, columns - 1].
/// y: [N] i32 (integer labels: any integer dtype, [N, 1] squeezed, or a CSV column of integers
/// with |v| <= 2^24) or [N] / [N, K] f32 (real-valued targets: f16/f32/f64, or a CSV column
/// with a fraction). Range checks against a class count are the caller's (it knows the model).
struct labeled_arrays {
  tensor x;
  tensor y;
  std::string source; ///< what was read, for messages, e.g. "train.npz (x, y)"
};

/// Reads `path`, its format chosen by the file (magic bytes; the suffix only where a format has
/// no magic, i.e. .csv): .npy is not enough alone (one array), so accepted are:
///   .npz (np.savez / np.savez_compressed: a zip of .npy files), .safetensors, .csv with a header,
///   an IDX pair (a directory holding *images*/*labels* IDX files, e.g. MNIST's layout:
///   train-images-idx3-ubyte[.gz] + train-labels-idx1-ubyte[.gz]; `train_split` picks train or
///   t10k), a directory of shards of one of these formats, read in name order and concatenated
///   (hidden files skipped; a subdirectory shard must be an IDX pair; CSV shards share one header,
///   and their target is f32 if any shard's is).
/// Throws input_error naming the file, the array and what is wrong (missing array, wrong magic,
/// truncated, unsupported dtype, x and y row counts differ, NaN/inf in x or y, empty).
labeled_arrays read_labeled_arrays(const std::filesystem::path& path, const array_names& names,
                                   bool train_split = true);

} // namespace troupe::runtime
