#include "actors/collectives/collective_plan_run.hpp"

#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "actors/collectives/collective_pieces.hpp"
#include "runtime/net/transport/courier.hpp"

namespace troupe::actors::collective_detail {

namespace {

using actors::collective_payload;

/// Checks a received message against the step that expects it; empty if fine.
std::string check_message(const op_state& op, const coll::plan_step& step,
                          const collective_msg& m) {
  const bool whole = m.payload == collective_payload::whole_input;
  if (m.kind != op.kind)
    return "rank " + std::to_string(m.from) + " runs " + to_string(m.kind) +
           " but this rank runs " + to_string(op.kind) + " under the same op id";
  if (!whole && m.payload != collective_payload::piece)
    return "unknown payload " + std::to_string(static_cast<int>(m.payload)) + " from rank " +
           std::to_string(m.from);
  if (op.kind == collective_kind::broadcast && m.root != op.root)
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
    return "rank " + std::to_string(m.from) + " sent a whole buffer for " + to_string(op.kind);
  }
  return {};
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
  std::tie(m.data, m.payload) =
      take_piece(self, op, step.send_block, seg, step.release_after_send, dest);
  st.stats.bytes_sent +=
      static_cast<std::uint64_t>(piece_bytes(op, step.send_block, seg, m.data, m.payload));
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
        const bool whole = m.payload == collective_payload::whole_input;
        const bool final = static_cast<int>(s) == op.final_step[static_cast<std::size_t>(m.block)];
        auto b = static_cast<std::size_t>(m.block);
        const bool into_result = final && op.result_bytes != nullptr;
        if (step.action == coll::on_receive::copy) {
          op.pieces[b][k] = whole ? range_of(m.data, op.layout[b][k]) : std::move(m.data);
          op.from_input[b][k] = false;
          if (into_result)
            place(op, m.block, seg);
        } else {
          reduce_piece(op, m.block, seg, std::move(m.data), whole, step.action, into_result);
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
} // namespace

void lay_out(rank_actor* self, op_state& op) {
  const auto& cfg = self->state.cfg;
  op.steps = op.plan->length();
  auto nb = static_cast<std::size_t>(op.plan->blocks);
  if (is_reducing(op.kind)) {
    op.total = op.input.numel();
    auto blocks = coll::partition(op.total, op.plan->blocks);
    std::int64_t largest = blocks.front().count;
    std::int64_t seg_elems = static_cast<std::int64_t>(cfg.segment_bytes / sizeof(float));
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
    int own = op.kind == collective_kind::all_gather ? cfg.rank : 0;
    if (holds_input(op, cfg.rank)) {
      op.whole_block = own;
      op.from_input[static_cast<std::size_t>(own)][0] = true;
    }
  }
  op.pieces.assign(nb, std::vector<tensor>(static_cast<std::size_t>(op.segs)));
  op.cursor.assign(static_cast<std::size_t>(op.segs), 0);
  op.sent.assign(static_cast<std::size_t>(op.segs), std::vector<bool>(op.steps, false));
  op.seg_done.assign(static_cast<std::size_t>(op.segs), false);
  op.final_step =
      final_steps(*op.plan, cfg.rank, op.kind == collective_kind::reduce_scatter ? cfg.rank : -1);
}

void add_result_buffer(rank_actor* self, op_state& op) {
  const bool segmented = op.segs > 1;
  const bool wanted = op.kind == collective_kind::allreduce_ring ||
                      (op.kind == collective_kind::allreduce_tree && segmented) ||
                      (op.kind == collective_kind::reduce_scatter && segmented);
  if (op.steps == 0 || !wanted)
    return;
  if (op.kind == collective_kind::reduce_scatter) {
    const auto& mine = op.layout[static_cast<std::size_t>(self->state.cfg.rank)];
    op.result_offset = mine.front().offset;
    op.result = tensor::empty(runtime::dtype::f32,
                              {mine.back().offset + mine.back().count - op.result_offset});
  } else {
    op.result = tensor::empty(op.input.type(), op.input.shape());
  }
  op.result_bytes = static_cast<char*>(op.result.mutable_raw_data());
}

void run_plan(rank_actor* self, std::int64_t id) {
  auto it = self->state.ops.find(id);
  if (it == self->state.ops.end())
    return;
  const int segs = it->second.segs;
  for (int k = 0; k < segs; ++k)
    pump(self, id, k);
}

void on_plan_message(rank_actor* self, collective_msg& m) {
  auto& st = self->state;
  auto id = m.op;
  auto seg = m.segment;
  auto it = st.ops.find(id);
  const bool outside =
      seg < 0 || m.step < 0 ||
      (it != st.ops.end() &&
       (seg >= it->second.segs || static_cast<std::size_t>(m.step) >= it->second.plan->length()));
  if (outside) {
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
}

} // namespace troupe::actors::collective_detail
