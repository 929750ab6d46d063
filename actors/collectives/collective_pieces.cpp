#include "actors/collectives/collective_pieces.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>

#include "runtime/copy_meter.hpp"

namespace troupe::actors::collective_detail {

namespace {

using actors::collective_payload;

/// o[i] = a[i] + b[i]; o may alias a or b (in-place reduction).
void add(float* o, const float* a, const float* b, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) {
    float x = a[i];
    float y = b[i];
    o[i] = x + y;
  }
}

/// Copies the pieces of `blocks` (in order) into one tensor of `shape`.
tensor concat(const op_state& op, const std::vector<int>& blocks, runtime::dtype type,
              runtime::shape_t shape) {
  auto out = tensor::empty(type, std::move(shape));
  auto es = runtime::element_size(type);
  char* dst = static_cast<char*>(out.mutable_raw_data());
  std::size_t off = 0;
  for (int b : blocks)
    for (int k = 0; k < op.segs; ++k) {
      const auto& p = op.pieces[static_cast<std::size_t>(b)][static_cast<std::size_t>(k)];
      auto bytes = static_cast<std::size_t>(p.numel()) * es;
      if (off + bytes > out.nbytes())
        throw std::logic_error("collective result larger than expected");
      if (bytes > 0)
        runtime::metered_copy(dst + off, p.raw_data(), bytes);
      off += bytes;
    }
  if (off != out.nbytes())
    throw std::logic_error("collective result smaller than expected");
  return out;
}

/// All-gather's result: every rank's block, along dim 0 when every block has
/// the same trailing dims, else flat.
tensor gathered(rank_actor* self, op_state& op) {
  int n = self->state.cfg.size;
  auto own = static_cast<std::size_t>(self->state.cfg.rank);
  if (n == 1)
    return op.input;
  if (op.from_input[own][0])
    op.pieces[own][0] = op.input;
  const auto& first = op.pieces[0][0];
  bool same_tail = first.rank() >= 1;
  std::int64_t rows = 0, total = 0;
  for (int b = 0; b < n; ++b) {
    const auto& p = op.pieces[static_cast<std::size_t>(b)][0];
    total += p.numel();
    if (p.type() != first.type())
      throw std::invalid_argument("all-gather: ranks passed different dtypes");
    if (p.rank() != first.rank() ||
        !std::equal(p.shape().begin() + (p.rank() ? 1 : 0), p.shape().end(),
                    first.shape().begin() + (first.rank() ? 1 : 0)))
      same_tail = false;
    else if (p.rank() >= 1)
      rows += p.dim(0);
  }
  runtime::shape_t shape{total};
  if (same_tail) {
    shape = first.shape();
    shape[0] = rows;
  }
  std::vector<int> all(static_cast<std::size_t>(n));
  for (int b = 0; b < n; ++b)
    all[static_cast<std::size_t>(b)] = b;
  return concat(op, all, first.type(), shape);
}

} // namespace

tensor slice_copy(const tensor& t, coll::chunk c) {
  auto out = tensor::empty(t.type(), {c.count});
  auto es = runtime::element_size(t.type());
  if (c.count > 0)
    runtime::metered_copy(out.mutable_raw_data(),
                          static_cast<const char*>(t.raw_data()) +
                              static_cast<std::size_t>(c.offset) * es,
                          static_cast<std::size_t>(c.count) * es);
  return out;
}

std::pair<tensor, collective_payload> take_piece(rank_actor* self, op_state& op, int b, int k,
                                                 bool release, const caf::actor& dest) {
  auto bi = static_cast<std::size_t>(b);
  auto ki = static_cast<std::size_t>(k);
  tensor t;
  auto payload = collective_payload::piece;
  if (op.from_input[bi][ki]) {
    if (b == op.whole_block && op.segs == 1) {
      t = op.input;
    } else if (is_reducing(op.kind) && same_process(self, dest)) {
      t = op.input;
      payload = collective_payload::whole_input;
    } else {
      t = slice_copy(op.input, op.layout[bi][ki]);
    }
  } else {
    if (!op.pieces[bi][ki].defined())
      throw std::logic_error("collective plan sends block " + std::to_string(b) +
                             " that this rank no longer holds");
    t = release ? std::move(op.pieces[bi][ki]) : op.pieces[bi][ki];
  }
  if (release) {
    op.pieces[bi][ki] = tensor{};
    op.from_input[bi][ki] = false;
  }
  return {std::move(t), payload};
}

void reduce_piece(op_state& op, int b, int k, tensor received, bool whole, coll::on_receive order) {
  auto bi = static_cast<std::size_t>(b);
  auto ki = static_cast<std::size_t>(k);
  const auto& c = op.layout[bi][ki];
  auto n = c.count;
  const float* own = nullptr;
  bool own_is_input = op.from_input[bi][ki];
  if (own_is_input) {
    own = op.input.data<float>() + c.offset;
  } else {
    if (!op.pieces[bi][ki].defined())
      throw std::logic_error("collective plan reduces into a released block");
    own = op.pieces[bi][ki].data<float>();
  }
  const float* in = received.data<float>() + (whole ? c.offset : 0);
  tensor kept;
  if (!whole && received.is_unique())
    kept = std::move(received); // sole owner: reduce in place
  else if (!own_is_input && op.pieces[bi][ki].is_unique())
    kept = op.pieces[bi][ki];
  else
    kept = tensor::empty(runtime::dtype::f32, {n});
  float* o = kept.mutable_data<float>(); // unique: never copies
  if (order == coll::on_receive::reduce_recv_first)
    add(o, in, own, n);
  else
    add(o, own, in, n);
  op.pieces[bi][ki] = std::move(kept);
  op.from_input[bi][ki] = false;
}

void place(op_state& op, int b, int k) {
  auto bi = static_cast<std::size_t>(b);
  auto ki = static_cast<std::size_t>(k);
  const auto& c = op.layout[bi][ki];
  const auto es = runtime::element_size(op.input.type());
  const void* src = op.from_input[bi][ki]
                        ? static_cast<const void*>(op.input.data<float>() + c.offset)
                        : op.pieces[bi][ki].raw_data();
  if (c.count > 0) {
    if (src == nullptr || c.offset < op.result_offset ||
        c.offset - op.result_offset + c.count > op.result.numel())
      throw std::logic_error("collective piece outside the result");
    runtime::metered_copy(op.result_bytes +
                              static_cast<std::size_t>(c.offset - op.result_offset) * es,
                          src, static_cast<std::size_t>(c.count) * es);
  }
  op.placed += c.count;
}

std::int64_t piece_bytes(const op_state& op, int b, int k, const tensor& sent,
                         collective_payload payload) {
  if (payload != collective_payload::whole_input)
    return static_cast<std::int64_t>(sent.nbytes());
  return op.layout[static_cast<std::size_t>(b)][static_cast<std::size_t>(k)].count *
         static_cast<std::int64_t>(runtime::element_size(op.input.type()));
}

// Tiles stay in L1 while every source is added.
void fold(float* out, const std::vector<const float*>& src, std::int64_t n) {
  constexpr std::int64_t tile = 2048;
  for (std::int64_t t = 0; t < n; t += tile) {
    const auto m = std::min(tile, n - t);
    add(out + t, src[0] + t, src[1] + t, m);
    for (std::size_t j = 2; j < src.size(); ++j)
      add(out + t, out + t, src[j] + t, m);
  }
}

tensor result_of(rank_actor* self, op_state& op) {
  if (op.result.defined()) {
    if (op.placed != op.result.numel())
      throw std::logic_error("collective result incomplete: " + std::to_string(op.placed) + " of " +
                             std::to_string(op.result.numel()) + " elements");
    return op.result;
  }
  auto r = static_cast<std::size_t>(self->state.cfg.rank);
  switch (op.kind) {
  case collective_kind::allreduce_ring:
  case collective_kind::allreduce_tree:
    if (op.plan->length() == 0)
      return op.input;
    if (op.plan->blocks == 1 && op.segs == 1)
      return op.pieces[0][0].reshape(op.input.shape());
    throw std::logic_error("all-reduce without a result buffer");
  case collective_kind::reduce_scatter:
    if (op.from_input[r][0]) { // n == 1
      std::int64_t count = 0;
      for (auto& s : op.layout[r])
        count += s.count;
      return slice_copy(op.input, coll::chunk{0, count});
    }
    if (op.segs == 1)
      return op.pieces[r][0];
    throw std::logic_error("reduce-scatter without a result buffer");
  case collective_kind::all_gather:
    return gathered(self, op);
  default:
    return op.from_input[0][0] ? op.input : op.pieces[0][0];
  }
}

} // namespace troupe::actors::collective_detail
