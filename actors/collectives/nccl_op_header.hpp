#pragma once

// The header every NCCL rank contributes to an operation before its payload
// (no CUDA here, so the CPU tests cover it).
//
// NCCL trusts its callers: ranks that pass different counts read and write
// past their buffers or hang, and a non-root of a broadcast cannot know the
// shape it will receive. So each operation starts with an ncclAllGather of
// every rank's header (header_words int64 values); every rank then runs
// check_headers over the same n headers and therefore reaches the same
// verdict: all ranks go on, or all fail with the same message (the actor
// backend's checks, done before any payload moves). The headers also carry
// what the payload step needs: the broadcast root's dtype and shape, and each
// rank's all-gather size.

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "runtime/dtype.hpp"
#include "runtime/tensor.hpp"

namespace troupe::actors::nccl {

/// The collective an operation runs (the request atom of collective_group.hpp).
enum class op_kind : std::int32_t {
  all_reduce = 1,
  broadcast = 2,
  reduce_scatter = 3,
  all_gather = 4,
};

/// "all-reduce", "broadcast", "reduce-scatter", "all-gather".
const char* to_string(op_kind k) noexcept;

/// What one rank brings to an operation.
struct op_header {
  op_kind kind = op_kind::all_reduce;
  std::int64_t op = 0;   ///< the callers' op id
  std::int32_t root = 0; ///< broadcast root (0 otherwise)
  bool has_tensor = false;
  runtime::dtype type = runtime::dtype::f32;
  std::int64_t numel = 0;
  runtime::shape_t shape; ///< at most max_header_dims extents travel

  /// The header of a request: `t` may be undefined (a broadcast non-root).
  static op_header of(op_kind kind, std::int64_t op, std::int32_t root, const runtime::tensor& t);
};

inline constexpr std::size_t header_words = 16;
inline constexpr std::size_t max_header_dims = 8;

/// The header as header_words int64 values (magic, kind, op, root, has_tensor,
/// dtype, numel, rank, extents). A shape of more than max_header_dims extents
/// keeps its rank but not its extents; check_headers rejects it where the
/// shape matters.
std::array<std::int64_t, header_words> encode(const op_header& h);

/// The inverse of encode; nullopt for words that encode did not produce
/// (wrong magic, unknown kind or dtype, negative sizes).
std::optional<op_header> decode(std::span<const std::int64_t> words);

/// The checks of the actor backend over all ranks' headers (all[r] is rank
/// r's), as seen from rank `self`: same op id and kind everywhere; all-reduce
/// and reduce-scatter need an f32 tensor of the same numel on every rank;
/// broadcast needs the same root in range on every rank and a tensor on the
/// root; all-gather needs a tensor of one dtype on every rank. Empty when all
/// is well, else what is wrong ("buffer size mismatch: rank 1 has 7
/// elements, this rank 8").
std::string check_headers(const std::vector<op_header>& all, int self);

/// The shape of an all-gather's result, by the actor backend's rule: the
/// tensors stacked along dim 0 when all share their trailing dims, else
/// flattened and concatenated; a single rank's tensor keeps its shape.
runtime::shape_t all_gather_shape(const std::vector<op_header>& all);

} // namespace troupe::actors::nccl
