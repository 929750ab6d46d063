#include "actors/collectives/collective_group.hpp"

#include <algorithm>
#include <cstring>
#include <map>
#include <string>
#include <tuple>
#include <utility>

#include <caf/event_based_actor.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>

#include "actors/collectives/collective_failure.hpp"
#include "runtime/error.hpp"
#include "runtime/net/messages.hpp"
#include "runtime/net/transport/courier.hpp"

namespace troupe::actors {

namespace {

using runtime::collective_msg;
using runtime::tensor;
namespace coll = collectives;

/// collective_msg::kind: the operation and (for all-reduce) the algorithm.
enum op_kind : std::int32_t {
  kind_allreduce_ring = 1,
  kind_allreduce_tree = 2,
  kind_reduce_scatter = 3,
  kind_all_gather = 4,
  kind_broadcast = 5,
};

const char* kind_name(std::int32_t k) {
  switch (k) {
  case kind_allreduce_ring:
    return "all-reduce (ring)";
  case kind_allreduce_tree:
    return "all-reduce (tree)";
  case kind_reduce_scatter:
    return "reduce-scatter";
  case kind_all_gather:
    return "all-gather";
  case kind_broadcast:
    return "broadcast";
  }
  return "unknown collective";
}

bool is_reducing(std::int32_t k) {
  return k == kind_allreduce_ring || k == kind_allreduce_tree || k == kind_reduce_scatter;
}

/// Flag on collective_msg::kind: `data` is the sender's whole input buffer
/// (shared, in process only) and the block is its layout range. Saves the
/// sender the copy that slicing would cost; the receiver reads the range.
constexpr std::int32_t kind_whole_input = 1 << 8;
constexpr std::int32_t kind_mask = 0xff;

/// Messages outside the plan's steps, of the in-process ring all-reduce (all
/// ranks in one process, see op_state::direct); `segment` names the sender:
///   step_input:  data = the sender's whole input (shared, not copied);
///   step_result: data = the one result buffer (from rank 0);
///   step_done:   no data; the sender's block of the result is written.
constexpr std::int32_t step_input = -1;
constexpr std::int32_t step_result = -2;
constexpr std::int32_t step_done = -3;

struct op_state {
  std::int32_t kind = 0;
  std::int32_t root = 0;
  caf::response_promise rp;
  const coll::collective_plan* plan = nullptr;
  std::size_t steps = 0; ///< plan steps this op runs (direct: none)
  tensor input;
  std::int64_t total = -1; ///< elements of the buffer (reducing kinds), else -1
  /// The input as a whole is piece (whole_block, 0) (no slicing needed), or -1.
  int whole_block = -1;
  int segs = 1;
  /// Absolute element ranges of piece [block][segment] in the buffer
  /// (reducing kinds only).
  std::vector<std::vector<coll::chunk>> layout;
  std::vector<std::vector<tensor>> pieces;
  /// Piece still lives in the input (read through it, slice to send).
  std::vector<std::vector<bool>> from_input;
  std::vector<std::size_t> cursor;     ///< next plan step per segment
  std::vector<std::vector<bool>> sent; ///< [segment][step]: that step's send is done
  std::vector<bool> seg_done;          ///< segment k ran all its steps
  int done_segs = 0;
  /// Per block of the result: the last step at which this rank receives it
  /// (its value is final afterwards), -1 if never or not part of the result.
  std::vector<int> final_step;
  /// The result, filled as blocks become final (overlapping the copies with
  /// the transfers still under way) instead of concatenated at the end;
  /// undefined when the result is a piece itself or is built at the end.
  tensor result;
  char* result_bytes = nullptr;
  std::int64_t result_offset = 0; ///< element offset of result[0] in the buffer
  std::int64_t placed = 0;        ///< elements written into result
  /// In-process ring all-reduce: every rank sees every input (shared, not
  /// copied) and sums its block of one result buffer in one pass, in the
  /// ring's order; no block travels, nothing is concatenated.
  bool direct = false;
  std::vector<tensor> inputs; ///< direct: every rank's input
  int inputs_have = 0;
  bool computed = false;       ///< direct: this rank's block is written
  std::vector<bool> peer_done; ///< direct: rank j's block is written
  int peers_done = 0;
};

using stash_key = std::tuple<std::int64_t, std::int32_t, std::int32_t>; // op, step, segment

struct rank_state {
  collective_config cfg;
  std::vector<caf::actor> ranks;
  /// Every rank lives in this process: blocks are shared, not copied.
  bool all_local = false;
  std::map<std::int64_t, op_state> ops;
  std::map<stash_key, collective_msg> stash;
  std::map<std::pair<std::int32_t, std::int32_t>, coll::collective_plan> plans; // (kind, root)
  runtime::collective_stats stats;
  static inline const char* name = "collective_rank";

  rank_state() = default;
  rank_state(const rank_state&) = delete;
  rank_state& operator=(const rank_state&) = delete;
  /// However the rank ends (a kill by the job's teardown included), the
  /// operations still pending fail: nobody waits for a result that will
  /// never come (a device thread blocked in a tensor-parallel all-reduce).
  /// CAF destroys an actor's state in its on_exit, while the promises can
  /// still be delivered.
  ~rank_state() {
    if (ops.empty())
      return;
    auto err = caf::make_error(caf::sec::runtime_error,
                               "collective rank " + std::to_string(cfg.rank) + "/" +
                                   std::to_string(cfg.size) + " ended with " +
                                   std::to_string(ops.size()) + " operation(s) pending");
    for (auto& [id, op] : ops)
      if (op.rp.pending())
        op.rp.deliver(err);
  }
};

using rank_actor = caf::stateful_actor<rank_state>;

std::string label(rank_actor* self) {
  return "collective rank " + std::to_string(self->state.cfg.rank) + "/" +
         std::to_string(self->state.cfg.size);
}

const coll::collective_plan& plan_for(rank_actor* self, std::int32_t kind, std::int32_t root) {
  auto& st = self->state;
  auto key = std::make_pair(kind, kind == kind_broadcast ? root : 0);
  auto it = st.plans.find(key);
  if (it != st.plans.end())
    return it->second;
  int n = st.cfg.size;
  coll::collective_plan p;
  switch (kind) {
  case kind_allreduce_ring:
    p = coll::ring_allreduce(n);
    break;
  case kind_allreduce_tree:
    p = coll::tree_allreduce(n);
    break;
  case kind_reduce_scatter:
    p = coll::ring_reduce_scatter(n);
    break;
  case kind_all_gather:
    p = coll::ring_all_gather(n);
    break;
  default:
    p = coll::binomial_broadcast(n, root);
    break;
  }
  return st.plans.emplace(key, std::move(p)).first->second;
}

/// A 1-D copy of elements [c.offset, c.offset + c.count) of `t`.
tensor slice_copy(const tensor& t, coll::chunk c) {
  auto out = tensor::empty(t.type(), {c.count});
  auto es = runtime::element_size(t.type());
  if (c.count > 0)
    std::memcpy(out.mutable_raw_data(),
                static_cast<const char*>(t.raw_data()) + static_cast<std::size_t>(c.offset) * es,
                static_cast<std::size_t>(c.count) * es);
  return out;
}

bool same_process(rank_actor* self, const caf::actor& a) {
  return a.node() == self->node();
}

/// The piece to send; moved out when the plan releases it after the send (so
/// that the receiver owns the storage alone and reduces into it in place). A
/// piece that still lives in the input goes to a rank in this process as the
/// whole input (flagged in `kind`), to others as a copy of its range.
tensor take_piece(rank_actor* self, op_state& op, int b, int k, bool release,
                  const caf::actor& dest, std::int32_t& kind) {
  auto bi = static_cast<std::size_t>(b);
  auto ki = static_cast<std::size_t>(k);
  tensor t;
  if (op.from_input[bi][ki]) {
    if (b == op.whole_block && op.segs == 1) {
      t = op.input;
    } else if (is_reducing(op.kind) && same_process(self, dest)) {
      t = op.input;
      kind |= kind_whole_input;
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
  return t;
}

/// o[i] = a[i] + b[i]; o may alias a or b (in-place reduction).
void add(float* o, const float* a, const float* b, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) {
    float x = a[i];
    float y = b[i];
    o[i] = x + y;
  }
}

/// piece(b, k) = received + own or own + received, as the plan says, in
/// place into whichever operand this rank owns alone, else a new tensor.
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

/// Writes piece (b, k) into the result at its place.
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
    std::memcpy(op.result_bytes + static_cast<std::size_t>(c.offset - op.result_offset) * es, src,
                static_cast<std::size_t>(c.count) * es);
  }
  op.placed += c.count;
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
        std::memcpy(dst + off, p.raw_data(), bytes);
      off += bytes;
    }
  if (off != out.nbytes())
    throw std::logic_error("collective result smaller than expected");
  return out;
}

tensor result_of(rank_actor* self, op_state& op) {
  int n = self->state.cfg.size;
  int r = self->state.cfg.rank;
  if (op.result.defined()) {
    if (op.placed != op.result.numel())
      throw std::logic_error("collective result incomplete: " + std::to_string(op.placed) + " of " +
                             std::to_string(op.result.numel()) + " elements");
    return op.result;
  }
  switch (op.kind) {
  case kind_allreduce_ring:
  case kind_allreduce_tree: {
    if (op.plan->length() == 0)
      return op.input;
    if (op.plan->blocks == 1 && op.segs == 1)
      return op.pieces[0][0].reshape(op.input.shape());
    throw std::logic_error("all-reduce without a result buffer");
  }
  case kind_reduce_scatter: {
    if (op.from_input[static_cast<std::size_t>(r)][0]) { // n == 1
      std::int64_t count = 0;
      for (auto& s : op.layout[static_cast<std::size_t>(r)])
        count += s.count;
      return slice_copy(op.input, coll::chunk{0, count});
    }
    if (op.segs == 1)
      return op.pieces[static_cast<std::size_t>(r)][0];
    throw std::logic_error("reduce-scatter without a result buffer");
  }
  case kind_all_gather: {
    if (n == 1)
      return op.input;
    auto own = static_cast<std::size_t>(r);
    if (op.from_input[own][0])
      op.pieces[own][0] = op.input;
    // Along dim 0 when every block has the same trailing dims, else flat.
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
  default:
    return op.from_input[0][0] ? op.input : op.pieces[0][0];
  }
}

/// Any failed collective leaves the group inconsistent (peers would wait for
/// this rank forever): fail every pending operation with the error and quit
/// with it, so that the peers fail at once too. The error's context is
/// (text, int32 rank where the failure began, cause).
caf::error fail_rank(rank_actor* self, const std::string& what) {
  auto& st = self->state;
  auto text = label(self) + ": " + what;
  auto err =
      caf::make_error(caf::sec::runtime_error, text, static_cast<std::int32_t>(st.cfg.rank), text);
  for (auto& [id, op] : st.ops)
    op.rp.deliver(err);
  st.ops.clear();
  st.stash.clear();
  self->quit(err);
  return err;
}

std::string op_text(std::int64_t op, const std::string& what) {
  return "op " + std::to_string(op) + ": " + what;
}

/// Checks a received message against the step that expects it; empty if fine.
std::string check_message(const op_state& op, const coll::plan_step& step,
                          const collective_msg& m) {
  const auto kind = m.kind & kind_mask;
  const bool whole = (m.kind & kind_whole_input) != 0;
  if (kind != op.kind)
    return std::string{"rank "} + std::to_string(m.from) + " runs " + kind_name(kind) +
           " but this rank runs " + kind_name(op.kind) + " under the same op id";
  if (op.kind == kind_broadcast && m.root != op.root)
    return "broadcast root mismatch: rank " + std::to_string(m.from) + " has root " +
           std::to_string(m.root) + ", this rank " + std::to_string(op.root);
  if (is_reducing(op.kind) && m.total != op.total)
    return "buffer size mismatch: rank " + std::to_string(m.from) + " has " +
           std::to_string(m.total) + " elements, this rank " + std::to_string(op.total);
  if (m.from != step.recv_from || m.block != step.recv_block)
    return "unexpected block " + std::to_string(m.block) + " from rank " + std::to_string(m.from) +
           " at step " + std::to_string(m.step);
  if (!m.data.defined())
    return "received an undefined tensor from rank " + std::to_string(m.from);
  if (is_reducing(op.kind)) {
    const auto& c =
        op.layout[static_cast<std::size_t>(m.block)][static_cast<std::size_t>(m.segment)];
    auto expect = whole ? op.total : c.count;
    if (m.data.type() != runtime::dtype::f32 || m.data.numel() != expect)
      return "received " + std::to_string(m.data.numel()) + " elements for a segment of " +
             std::to_string(c.count) + " from rank " + std::to_string(m.from);
  } else if (whole) {
    return "rank " + std::to_string(m.from) + " sent a whole buffer for " + kind_name(op.kind);
  }
  return {};
}

std::int64_t piece_bytes(const op_state& op, int b, int k, const tensor& sent, bool whole) {
  if (!whole)
    return static_cast<std::int64_t>(sent.nbytes());
  return op.layout[static_cast<std::size_t>(b)][static_cast<std::size_t>(k)].count *
         static_cast<std::int64_t>(runtime::element_size(op.input.type()));
}

/// out = ((src[0] + src[1]) + src[2]) + ... elementwise: the expression
/// the ring's reduce-scatter evaluates, in one pass over memory (tiles stay
/// in L1 while every source is added).
void fold(float* out, const std::vector<const float*>& src, std::int64_t n) {
  constexpr std::int64_t tile = 2048;
  for (std::int64_t t = 0; t < n; t += tile) {
    const auto m = std::min(tile, n - t);
    add(out + t, src[0] + t, src[1] + t, m);
    for (std::size_t j = 2; j < src.size(); ++j)
      add(out + t, out + t, src[j] + t, m);
  }
}

/// Delivers the op's result once everything it waits for is done.
void finish_if_done(rank_actor* self, std::map<std::int64_t, op_state>::iterator it) {
  auto& st = self->state;
  auto& op = it->second;
  if (op.direct ? !op.computed || op.peers_done < st.cfg.size - 1 : op.done_segs < op.segs)
    return;
  auto result = op.direct ? op.result : result_of(self, op);
  ++st.stats.ops_completed;
  op.rp.deliver(std::move(result));
  st.ops.erase(it);
}

/// Direct mode: once every input and the result buffer are here, sums this
/// rank's block (c = rank) in the ring's order x[c+1], ..., x[c+n-1], x[c],
/// and tells the others.
void compute_direct(rank_actor* self, std::int64_t id, op_state& op) {
  auto& st = self->state;
  const int n = st.cfg.size;
  const int r = st.cfg.rank;
  if (op.computed || op.result_bytes == nullptr || op.inputs_have < n)
    return;
  auto blocks = coll::partition(op.total, n);
  const auto c = blocks[static_cast<std::size_t>(r)];
  if (c.count > 0) {
    std::vector<const float*> src;
    for (int i = 1; i <= n; ++i)
      src.push_back(op.inputs[static_cast<std::size_t>((r + i) % n)].data<float>() + c.offset);
    fold(reinterpret_cast<float*>(op.result_bytes) + c.offset, src, c.count);
  }
  op.computed = true;
  for (auto& x : op.inputs)
    x = tensor{}; // every peer holds its own
  // Bytes of this rank that the peers read: its input blocks and its block
  // of the result (what a ring would send: 2(n - 1)/n of the buffer).
  std::int64_t shared = 0;
  for (int j = 0; j < n; ++j)
    shared += j == r ? (n - 1) * c.count : blocks[static_cast<std::size_t>(j)].count;
  st.stats.bytes_sent += static_cast<std::uint64_t>(shared) * sizeof(float);
  for (int j = 0; j < n; ++j) {
    if (j == r)
      continue;
    collective_msg m;
    m.op = id;
    m.kind = op.kind;
    m.step = step_done;
    m.segment = r;
    m.from = r;
    m.total = op.total;
    ++st.stats.messages_sent;
    caf::anon_send(st.ranks[static_cast<std::size_t>(j)], std::move(m));
  }
}

/// Takes in a message of the direct protocol (step < 0).
void absorb_direct(op_state& op, collective_msg& m) {
  const int j = m.segment;
  if (!op.direct || (m.kind & kind_mask) != op.kind)
    throw std::runtime_error(std::string{"rank "} + std::to_string(m.from) + " runs " +
                             kind_name(m.kind & kind_mask) + " but this rank runs " +
                             kind_name(op.kind) + " under the same op id");
  if (m.total != op.total)
    throw std::runtime_error("buffer size mismatch: rank " + std::to_string(m.from) + " has " +
                             std::to_string(m.total) + " elements, this rank " +
                             std::to_string(op.total));
  auto ji = static_cast<std::size_t>(j);
  if (m.step == step_input) {
    if (op.computed || op.inputs[ji].defined() || !m.data.defined() ||
        m.data.type() != runtime::dtype::f32 || m.data.numel() != op.total)
      throw std::runtime_error("bad input from rank " + std::to_string(j));
    op.inputs[ji] = std::move(m.data);
    ++op.inputs_have;
  } else if (m.step == step_result) {
    if (j != 0 || op.result_bytes != nullptr || !m.data.defined() ||
        m.data.type() != runtime::dtype::f32 || m.data.numel() != op.total)
      throw std::runtime_error("bad result buffer from rank " + std::to_string(j));
    op.result = m.data.reshape(op.input.shape());
    // Every rank writes its own block through this pointer before anyone
    // hands the buffer out (each waits for every step_done): the one place
    // where the group bypasses copy on write.
    op.result_bytes = const_cast<char*>(static_cast<const char*>(op.result.raw_data()));
  } else {
    if (op.peer_done[ji])
      throw std::runtime_error("duplicate completion notice from rank " + std::to_string(j));
    op.peer_done[ji] = true;
    ++op.peers_done;
  }
}

/// Sends what step `s` of segment `seg` sends.
void send_step(rank_actor* self, std::int64_t id, op_state& op, int seg, std::size_t s) {
  auto& st = self->state;
  const auto& step = op.plan->steps[static_cast<std::size_t>(st.cfg.rank)][s];
  const auto& dest = st.ranks[static_cast<std::size_t>(step.send_to)];
  collective_msg m;
  m.op = id;
  m.kind = op.kind;
  m.root = op.root;
  m.step = static_cast<std::int32_t>(s);
  m.block = step.send_block;
  m.segment = seg;
  m.from = st.cfg.rank;
  m.total = op.total;
  m.data = take_piece(self, op, step.send_block, seg, step.release_after_send, dest, m.kind);
  st.stats.bytes_sent += static_cast<std::uint64_t>(
      piece_bytes(op, step.send_block, seg, m.data, (m.kind & kind_whole_input) != 0));
  ++st.stats.messages_sent;
  runtime::transport::deliver(st.cfg.courier, dest, std::move(m));
  op.sent[static_cast<std::size_t>(seg)][s] = true;
}

/// Runs segment `seg` of op `id` as far as the messages received allow.
void pump(rank_actor* self, std::int64_t id, int seg) {
  auto& st = self->state;
  auto it = st.ops.find(id);
  if (it == st.ops.end())
    return;
  auto& op = it->second;
  auto k = static_cast<std::size_t>(seg);
  const auto& steps = op.plan->steps[static_cast<std::size_t>(st.cfg.rank)];
  try {
    if (op.seg_done[k])
      return;
    while (op.cursor[k] < op.steps) {
      auto s = op.cursor[k];
      const auto& step = steps[s];
      if (step.send_to >= 0 && !op.sent[k][s])
        send_step(self, id, op, seg, s);
      if (step.recv_from >= 0) {
        auto sit = st.stash.find(stash_key{id, static_cast<std::int32_t>(s), seg});
        if (sit == st.stash.end())
          return; // wait for it
        auto m = std::move(sit->second);
        st.stash.erase(sit);
        if (auto what = check_message(op, step, m); !what.empty()) {
          fail_rank(self, op_text(id, what));
          return;
        }
        const bool whole = (m.kind & kind_whole_input) != 0;
        const bool final = static_cast<int>(s) == op.final_step[static_cast<std::size_t>(m.block)];
        auto b = static_cast<std::size_t>(m.block);
        if (step.action == coll::on_receive::copy) {
          op.pieces[b][k] = whole ? slice_copy(m.data, op.layout[b][k]) : std::move(m.data);
          op.from_input[b][k] = false;
          if (final && op.result_bytes != nullptr)
            place(op, m.block, seg);
        } else {
          reduce_piece(op, m.block, seg, std::move(m.data), whole, step.action);
          if (final && op.result_bytes != nullptr)
            place(op, m.block, seg);
        }
      }
      ++op.cursor[k];
    }
    op.seg_done[k] = true;
    ++op.done_segs;
    finish_if_done(self, it);
  } catch (const std::exception& e) {
    fail_rank(self, op_text(id, e.what()));
  }
}

/// Per block, the last step of the whole plan at which `rank` receives it
/// (-1: never, or `only` >= 0 and the block is not `only`).
std::vector<int> final_steps(const coll::collective_plan& p, int rank, int only) {
  std::vector<int> out(static_cast<std::size_t>(p.blocks), -1);
  const auto& mine = p.steps[static_cast<std::size_t>(rank)];
  for (std::size_t s = 0; s < mine.size(); ++s)
    if (mine[s].recv_from >= 0 && (only < 0 || mine[s].recv_block == only))
      out[static_cast<std::size_t>(mine[s].recv_block)] = static_cast<int>(s);
  return out;
}

/// Starts op `id` for the caller's request; the caller gets the result or an error.
caf::result<tensor> start(rank_actor* self, std::int32_t kind, std::int64_t id, std::int32_t root,
                          tensor input) {
  auto& st = self->state;
  int n = st.cfg.size;
  int rank = st.cfg.rank;
  if (st.ranks.empty())
    return caf::make_error(caf::sec::runtime_error, label(self) + ": " + op_text(id, "not wired"));
  if (st.ops.count(id) != 0)
    return fail_rank(self,
                     op_text(id, "an operation with this id is already pending on this rank"));
  if (kind == kind_broadcast && (root < 0 || root >= n))
    return fail_rank(self, op_text(id, "broadcast root " + std::to_string(root) + " out of range"));
  bool has_input = kind != kind_broadcast || root == rank;
  if (has_input && !input.defined())
    return fail_rank(self, op_text(id, std::string{kind_name(kind)} + " of an undefined tensor"));
  if (kind == kind_allreduce_ring || kind == kind_reduce_scatter) {
    if (input.type() != runtime::dtype::f32)
      return fail_rank(self,
                       op_text(id, std::string{kind_name(kind)} + " supports f32 tensors only"));
  }
  if (kind == kind_allreduce_ring) {
    auto algo = coll::choose_allreduce(input.nbytes(), n, st.cfg.tree_threshold_bytes, st.cfg.algo);
    if (algo == coll::allreduce_algo::tree)
      kind = kind_allreduce_tree;
  }
  op_state op;
  op.kind = kind;
  op.root = kind == kind_broadcast ? root : 0;
  try {
    op.plan = &plan_for(self, kind, root);
  } catch (const std::exception& e) {
    return fail_rank(self, op_text(id, e.what()));
  }
  op.rp = self->make_response_promise();
  op.steps = op.plan->length();
  auto nb = static_cast<std::size_t>(op.plan->blocks);
  if (is_reducing(kind)) {
    op.total = input.numel();
    auto blocks = coll::partition(op.total, op.plan->blocks);
    std::int64_t largest = blocks.front().count;
    std::int64_t seg_elems = static_cast<std::int64_t>(st.cfg.segment_bytes / sizeof(float));
    if (seg_elems > 0 && largest > seg_elems)
      op.segs = static_cast<int>((largest + seg_elems - 1) / seg_elems);
    op.layout.resize(nb);
    for (std::size_t b = 0; b < nb; ++b) {
      op.layout[b] = coll::partition(blocks[b].count, op.segs);
      for (auto& c : op.layout[b])
        c.offset += blocks[b].offset;
    }
    op.from_input.assign(nb, std::vector<bool>(static_cast<std::size_t>(op.segs), true));
    if (nb == 1)
      op.whole_block = 0;
  } else {
    op.from_input.assign(nb, std::vector<bool>(1, false));
    int own = kind == kind_all_gather ? rank : 0;
    if (has_input) {
      op.whole_block = own;
      op.from_input[static_cast<std::size_t>(own)][0] = true;
    }
  }
  op.input = std::move(input);
  op.pieces.assign(nb, std::vector<tensor>(static_cast<std::size_t>(op.segs)));
  op.cursor.assign(static_cast<std::size_t>(op.segs), 0);
  op.sent.assign(static_cast<std::size_t>(op.segs), std::vector<bool>(op.steps, false));
  op.seg_done.assign(static_cast<std::size_t>(op.segs), false);
  if (kind == kind_allreduce_ring && n > 1 && st.all_local) {
    op.direct = true;
    op.steps = 0;
    op.inputs.assign(static_cast<std::size_t>(n), tensor{});
    op.inputs[static_cast<std::size_t>(rank)] = op.input;
    op.inputs_have = 1;
    op.peer_done.assign(static_cast<std::size_t>(n), false);
    auto flat = op.input.reshape({op.total});
    if (rank == 0) {
      op.result = tensor::empty(op.input.type(), op.input.shape());
      op.result_bytes = static_cast<char*>(op.result.mutable_raw_data());
    }
    for (int j = 0; j < n; ++j) {
      if (j == rank)
        continue;
      for (bool result : {false, true}) {
        if (result && rank != 0)
          break;
        collective_msg m;
        m.op = id;
        m.kind = kind;
        m.step = result ? step_result : step_input;
        m.segment = rank;
        m.from = rank;
        m.total = op.total;
        m.data = result ? op.result.reshape({op.total}) : flat;
        ++st.stats.messages_sent;
        caf::anon_send(st.ranks[static_cast<std::size_t>(j)], std::move(m));
      }
    }
  } else if (op.steps > 0 &&
             ((kind == kind_allreduce_ring) || (kind == kind_allreduce_tree && op.segs > 1) ||
              (kind == kind_reduce_scatter && op.segs > 1))) {
    if (kind == kind_reduce_scatter) {
      const auto& mine = op.layout[static_cast<std::size_t>(rank)];
      op.result_offset = mine.front().offset;
      op.result = tensor::empty(runtime::dtype::f32,
                                {mine.back().offset + mine.back().count - op.result_offset});
    } else {
      op.result = tensor::empty(op.input.type(), op.input.shape());
    }
    op.result_bytes = static_cast<char*>(op.result.mutable_raw_data());
  }
  op.final_step = final_steps(*op.plan, rank, kind == kind_reduce_scatter ? rank : -1);
  auto rp = op.rp;
  int segs = op.segs;
  auto [it, inserted] = st.ops.emplace(id, std::move(op));
  (void)inserted;
  if (it->second.direct) {
    // Messages of the direct protocol that came before the request.
    try {
      for (auto sit = st.stash.lower_bound(stash_key{id, step_done, 0});
           sit != st.stash.end() && std::get<0>(sit->first) == id && std::get<1>(sit->first) < 0;) {
        auto m = std::move(sit->second);
        sit = st.stash.erase(sit);
        absorb_direct(it->second, m);
      }
      compute_direct(self, id, it->second);
    } catch (const std::exception& e) {
      return fail_rank(self, op_text(id, e.what()));
    }
    finish_if_done(self, it);
    return rp;
  }
  for (int k = 0; k < segs; ++k)
    pump(self, id, k);
  return rp;
}

caf::behavior collective_rank(rank_actor* self, collective_config cfg) {
  self->state.cfg = cfg;
  self->state.stats.rank = cfg.rank;
  self->state.stats.size = cfg.size;
  self->set_down_handler([self](caf::down_msg& dm) {
    auto& st = self->state;
    int who = -1;
    for (std::size_t i = 0; i < st.ranks.size(); ++i)
      if (st.ranks[i].address() == dm.source)
        who = static_cast<int>(i);
    if (who < 0)
      return;
    bool orderly =
        dm.reason == caf::exit_reason::normal || dm.reason == caf::exit_reason::user_shutdown;
    if (orderly && st.ops.empty()) {
      self->quit(dm.reason);
      return;
    }
    auto err = peer_death_error(self->system(), label(self), who, dm.reason, st.ops.size());
    for (auto& [id, op] : st.ops)
      op.rp.deliver(err);
    st.ops.clear();
    st.stash.clear();
    self->quit(err);
  });
  return {
      [self](runtime::wire_atom, std::vector<caf::actor> ranks) -> caf::result<void> {
        auto& st = self->state;
        if (!st.ranks.empty())
          return caf::make_error(caf::sec::runtime_error, label(self) + ": wired twice");
        if (static_cast<int>(ranks.size()) != st.cfg.size ||
            ranks[static_cast<std::size_t>(st.cfg.rank)] != caf::actor_cast<caf::actor>(self))
          return caf::make_error(caf::sec::runtime_error,
                                 label(self) + ": wiring does not match the rank and size");
        st.ranks = std::move(ranks);
        st.all_local = std::all_of(st.ranks.begin(), st.ranks.end(),
                                   [self](const caf::actor& a) { return same_process(self, a); });
        for (std::size_t i = 0; i < st.ranks.size(); ++i)
          if (static_cast<int>(i) != st.cfg.rank)
            self->monitor(st.ranks[i]);
        return caf::unit;
      },
      [self](collective_msg& m) {
        auto& st = self->state;
        auto id = m.op;
        auto seg = m.segment;
        auto it = st.ops.find(id);
        if (m.step < 0) { // the direct protocol (in process)
          if (m.step < step_done || seg < 0 || seg >= st.cfg.size || seg == st.cfg.rank ||
              seg != m.from) {
            fail_rank(self, op_text(id, "message for step " + std::to_string(m.step) +
                                            " outside the protocol (from rank " +
                                            std::to_string(m.from) + ")"));
            return;
          }
          if (it == st.ops.end()) {
            auto from = m.from;
            if (!st.stash.emplace(stash_key{id, m.step, seg}, std::move(m)).second)
              fail_rank(self, op_text(id, "duplicate message from rank " + std::to_string(from)));
            return;
          }
          try {
            absorb_direct(it->second, m);
            compute_direct(self, id, it->second);
            finish_if_done(self, it);
          } catch (const std::exception& e) {
            fail_rank(self, op_text(id, e.what()));
          }
          return;
        }
        if (it != st.ops.end() && (seg < 0 || seg >= it->second.segs || m.step < 0 ||
                                   static_cast<std::size_t>(m.step) >= it->second.plan->length())) {
          fail_rank(self, op_text(id, "message for step " + std::to_string(m.step) + ", segment " +
                                          std::to_string(seg) + " outside the plan (from rank " +
                                          std::to_string(m.from) + ")"));
          return;
        }
        stash_key key{id, m.step, seg};
        if (st.stash.count(key) != 0) {
          fail_rank(self, op_text(id, "duplicate message from rank " + std::to_string(m.from)));
          return;
        }
        st.stash.emplace(key, std::move(m));
        if (it != st.ops.end())
          pump(self, id, seg);
      },
      [self](runtime::allreduce_atom, std::int64_t id, tensor t) {
        return start(self, kind_allreduce_ring, id, 0, std::move(t));
      },
      [self](runtime::broadcast_atom, std::int64_t id, std::int32_t root, tensor t) {
        return start(self, kind_broadcast, id, root, std::move(t));
      },
      [self](runtime::reduce_scatter_atom, std::int64_t id, tensor t) {
        return start(self, kind_reduce_scatter, id, 0, std::move(t));
      },
      [self](runtime::all_gather_atom, std::int64_t id, tensor t) {
        return start(self, kind_all_gather, id, 0, std::move(t));
      },
      [self](runtime::coll_stats_atom) { return self->state.stats; },
  };
}

} // namespace

nlohmann::json to_json(const collective_config& c) {
  return {{"rank", c.rank},
          {"size", c.size},
          {"algo", coll::to_string(c.algo)},
          {"tree_threshold_bytes", c.tree_threshold_bytes},
          {"segment_bytes", c.segment_bytes}};
}

collective_config collective_config_from_json(const nlohmann::json& j) {
  try {
    collective_config c;
    c.rank = j.at("rank").get<int>();
    c.size = j.at("size").get<int>();
    c.algo = coll::parse_allreduce_algo(j.value("algo", std::string{"auto"}));
    c.tree_threshold_bytes = j.value("tree_threshold_bytes", c.tree_threshold_bytes);
    c.segment_bytes = j.value("segment_bytes", c.segment_bytes);
    if (c.size < 1 || c.size > 4096 || c.rank < 0 || c.rank >= c.size)
      throw runtime::input_error("collective config: rank " + std::to_string(c.rank) + " of " +
                                 std::to_string(c.size));
    return c;
  } catch (const nlohmann::json::exception& e) {
    throw runtime::input_error(std::string{"collective config: "} + e.what());
  } catch (const std::invalid_argument& e) {
    throw runtime::input_error(std::string{"collective config: "} + e.what());
  }
}

caf::actor spawn_collective_rank(caf::actor_system& sys, collective_config cfg) {
  if (cfg.size < 1 || cfg.rank < 0 || cfg.rank >= cfg.size)
    throw std::invalid_argument("collective rank " + std::to_string(cfg.rank) + " of " +
                                std::to_string(cfg.size) + ": bad rank or size");
  return sys.spawn(collective_rank, cfg);
}

std::vector<caf::actor> spawn_collective_group(caf::actor_system& sys, int n,
                                               collective_config base) {
  if (n < 1)
    throw std::invalid_argument("spawn_collective_group: n must be >= 1");
  std::vector<caf::actor> ranks;
  for (int r = 0; r < n; ++r) {
    auto cfg = base;
    cfg.rank = r;
    cfg.size = n;
    ranks.push_back(spawn_collective_rank(sys, cfg));
  }
  caf::scoped_actor self{sys};
  for (auto& r : ranks) {
    std::string failure;
    self->request(r, caf::infinite, runtime::wire_atom::value, ranks)
        .receive([] {}, [&](caf::error& e) { failure = sys.render(e); });
    if (!failure.empty()) {
      for (auto& x : ranks)
        self->send_exit(x, caf::exit_reason::user_shutdown);
      throw std::runtime_error("wiring the collective group failed: " + failure);
    }
  }
  return ranks;
}

} // namespace troupe::actors
