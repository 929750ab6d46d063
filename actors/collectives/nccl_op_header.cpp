#include "actors/collectives/nccl_op_header.hpp"

#include <algorithm>
#include <stdexcept>

namespace troupe::actors::nccl {

namespace {

/// "troupeNH" in ASCII: words that did not come from encode() are refused.
constexpr std::int64_t header_magic = 0x74726f7570654e48;

/// Word positions in the encoded header.
enum word : std::size_t {
  w_magic,
  w_kind,
  w_op,
  w_root,
  w_has_tensor,
  w_dtype,
  w_numel,
  w_rank,
  w_dims,
};
static_assert(w_dims + max_header_dims == header_words);

bool valid_kind(std::int64_t k) {
  return k >= static_cast<std::int64_t>(op_kind::all_reduce) &&
         k <= static_cast<std::int64_t>(op_kind::all_gather);
}

std::string rank_text(int r) {
  return "rank " + std::to_string(r);
}

} // namespace

const char* to_string(op_kind k) noexcept {
  switch (k) {
  case op_kind::all_reduce:
    return "all-reduce";
  case op_kind::broadcast:
    return "broadcast";
  case op_kind::reduce_scatter:
    return "reduce-scatter";
  case op_kind::all_gather:
    return "all-gather";
  }
  return "unknown collective";
}

op_header op_header::of(op_kind kind, std::int64_t op, std::int32_t root,
                        const runtime::tensor& t) {
  op_header h;
  h.kind = kind;
  h.op = op;
  h.root = root;
  h.has_tensor = t.defined();
  if (h.has_tensor) {
    h.type = t.type();
    h.numel = t.numel();
    h.shape = t.shape();
  }
  return h;
}

std::array<std::int64_t, header_words> encode(const op_header& h) {
  std::array<std::int64_t, header_words> w{};
  w[w_magic] = header_magic;
  w[w_kind] = static_cast<std::int64_t>(h.kind);
  w[w_op] = h.op;
  w[w_root] = h.root;
  w[w_has_tensor] = h.has_tensor ? 1 : 0;
  w[w_dtype] = static_cast<std::int64_t>(h.type);
  w[w_numel] = h.numel;
  w[w_rank] = static_cast<std::int64_t>(h.shape.size());
  if (h.shape.size() <= max_header_dims)
    std::copy(h.shape.begin(), h.shape.end(), w.begin() + w_dims);
  return w;
}

std::optional<op_header> decode(std::span<const std::int64_t> w) {
  if (w.size() != header_words || w[w_magic] != header_magic || !valid_kind(w[w_kind]) ||
      (w[w_has_tensor] != 0 && w[w_has_tensor] != 1) || w[w_numel] < 0 || w[w_rank] < 0 ||
      w[w_dtype] < 0 || w[w_dtype] > 255)
    return std::nullopt;
  auto type = runtime::dtype_from_wire(static_cast<std::uint8_t>(w[w_dtype]));
  if (!type)
    return std::nullopt;
  op_header h;
  h.kind = static_cast<op_kind>(w[w_kind]);
  h.op = w[w_op];
  h.root = static_cast<std::int32_t>(w[w_root]);
  h.has_tensor = w[w_has_tensor] == 1;
  h.type = *type;
  h.numel = w[w_numel];
  auto rank = static_cast<std::size_t>(w[w_rank]);
  if (rank <= max_header_dims) {
    h.shape.assign(w.begin() + w_dims, w.begin() + w_dims + static_cast<std::ptrdiff_t>(rank));
    try { // extents and numel must agree: buffers are sized from them
      if (h.has_tensor ? runtime::shape_numel(h.shape) != h.numel
                       : !h.shape.empty() || h.numel != 0)
        return std::nullopt;
    } catch (const std::invalid_argument&) {
      return std::nullopt;
    }
  } else {
    h.shape.assign(rank, -1); // more extents than travel: marked unknown
  }
  return h;
}

std::string check_headers(const std::vector<op_header>& all, int self) {
  int n = static_cast<int>(all.size());
  if (self < 0 || self >= n)
    return "rank " + std::to_string(self) + " outside the " + std::to_string(n) + " headers";
  const auto& me = all[static_cast<std::size_t>(self)];
  for (int r = 0; r < n; ++r) {
    const auto& h = all[static_cast<std::size_t>(r)];
    if (h.op != me.op)
      return rank_text(r) + " runs op " + std::to_string(h.op) + " while this rank runs op " +
             std::to_string(me.op) + " (operations out of order)";
    if (h.kind != me.kind)
      return rank_text(r) + " runs " + to_string(h.kind) + " but this rank runs " +
             to_string(me.kind) + " under the same op id";
  }
  switch (me.kind) {
  case op_kind::all_reduce:
  case op_kind::reduce_scatter:
    for (int r = 0; r < n; ++r) {
      const auto& h = all[static_cast<std::size_t>(r)];
      if (!h.has_tensor)
        return rank_text(r) + ": " + to_string(me.kind) + " of an undefined tensor";
      if (h.type != runtime::dtype::f32)
        return rank_text(r) + ": " + to_string(me.kind) + " supports f32 tensors only";
    }
    for (int r = 0; r < n; ++r) {
      const auto& h = all[static_cast<std::size_t>(r)];
      if (h.numel != me.numel)
        return "buffer size mismatch: rank " + std::to_string(r) + " has " +
               std::to_string(h.numel) + " elements, this rank " + std::to_string(me.numel);
    }
    return {};
  case op_kind::broadcast: {
    for (int r = 0; r < n; ++r) {
      const auto& h = all[static_cast<std::size_t>(r)];
      if (h.root != me.root)
        return "broadcast root mismatch: rank " + std::to_string(r) + " has root " +
               std::to_string(h.root) + ", this rank " + std::to_string(me.root);
    }
    if (me.root < 0 || me.root >= n)
      return "broadcast root " + std::to_string(me.root) + " out of range";
    const auto& root = all[static_cast<std::size_t>(me.root)];
    if (!root.has_tensor)
      return "broadcast of an undefined tensor (root " + std::to_string(me.root) + ")";
    if (root.shape.size() > max_header_dims)
      return "broadcast: tensors of rank > " + std::to_string(max_header_dims) +
             " are not supported";
    return {};
  }
  case op_kind::all_gather:
    for (int r = 0; r < n; ++r) {
      const auto& h = all[static_cast<std::size_t>(r)];
      if (!h.has_tensor)
        return rank_text(r) + ": all-gather of an undefined tensor";
      if (h.type != all.front().type)
        return "all-gather: ranks passed different dtypes";
      if (h.shape.size() > max_header_dims)
        return rank_text(r) + ": all-gather: tensors of rank > " + std::to_string(max_header_dims) +
               " are not supported";
    }
    return {};
  }
  return "unknown collective";
}

runtime::shape_t all_gather_shape(const std::vector<op_header>& all) {
  if (all.size() == 1)
    return all.front().shape;
  const auto& first = all.front();
  bool same_tail = !first.shape.empty();
  std::int64_t rows = 0, total = 0;
  for (const auto& h : all) {
    total += h.numel;
    if (h.shape.size() != first.shape.size() ||
        !std::equal(h.shape.begin() + (h.shape.empty() ? 0 : 1), h.shape.end(),
                    first.shape.begin() + (first.shape.empty() ? 0 : 1)))
      same_tail = false;
    else if (!h.shape.empty())
      rows += h.shape.front();
  }
  if (!same_tail)
    return {total};
  auto shape = first.shape;
  shape.front() = rows;
  return shape;
}

} // namespace troupe::actors::nccl
