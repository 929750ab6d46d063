#include "actors/collectives/local_allreduce.hpp"

#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <caf/send.hpp>

#include "actors/collectives/collective_pieces.hpp"

namespace troupe::actors::collective_detail {

namespace {

/// Sends `m` to rank `j`, which lives in this process: the message holds
/// shared buffers and is never serialised.
void send_local(rank_actor* self, int j, local_allreduce_msg m) {
  auto& st = self->state;
  const auto& dest = st.ranks[static_cast<std::size_t>(j)];
  if (!same_process(self, dest))
    throw std::logic_error("local all-reduce message for rank " + std::to_string(j) +
                           " in another process");
  ++st.stats.messages_sent;
  caf::anon_send(dest, std::move(m));
}

local_allreduce_msg local_message(rank_actor* self, std::int64_t id, const op_state& op,
                                  local_part part) {
  local_allreduce_msg m;
  m.op = id;
  m.kind = op.kind;
  m.part = part;
  m.from = self->state.cfg.rank;
  m.total = op.total;
  return m;
}

/// Once every input and the result buffer are here, sums this rank's block
/// (c = rank) in the ring's order x[c+1], ..., x[c+n-1], x[c], and tells the
/// others.
void compute(rank_actor* self, std::int64_t id, op_state& op) {
  auto& st = self->state;
  const int n = st.cfg.size;
  const int r = st.cfg.rank;
  auto& local = op.local;
  if (local.computed || op.result_bytes == nullptr || local.inputs_have < n)
    return;
  auto blocks = coll::partition(op.total, n);
  const auto c = blocks[static_cast<std::size_t>(r)];
  if (c.count > 0) {
    std::vector<const float*> src;
    for (int i = 1; i <= n; ++i)
      src.push_back(local.inputs[static_cast<std::size_t>((r + i) % n)].data<float>() + c.offset);
    fold(reinterpret_cast<float*>(op.result_bytes) + c.offset, src, c.count);
  }
  local.computed = true;
  for (auto& x : local.inputs)
    x = tensor{}; // every peer holds its own
  // Bytes of this rank that the peers read: its input blocks and its block
  // of the result (what a ring would send: 2(n - 1)/n of the buffer).
  std::int64_t shared = 0;
  for (int j = 0; j < n; ++j)
    shared += j == r ? (n - 1) * c.count : blocks[static_cast<std::size_t>(j)].count;
  st.stats.bytes_sent += static_cast<std::uint64_t>(shared) * sizeof(float);
  for (int j = 0; j < n; ++j)
    if (j != r)
      send_local(self, j, local_message(self, id, op, local_part::done));
}

/// Takes in a peer's input, result buffer or completion notice.
void absorb(op_state& op, local_allreduce_msg& m) {
  auto& local = op.local;
  if (!local.active || m.kind != op.kind)
    throw std::runtime_error("rank " + std::to_string(m.from) + " runs " + to_string(m.kind) +
                             " but this rank runs " + to_string(op.kind) + " under the same op id");
  if (m.total != op.total)
    throw std::runtime_error("buffer size mismatch: rank " + std::to_string(m.from) + " has " +
                             std::to_string(m.total) + " elements, this rank " +
                             std::to_string(op.total));
  const auto j = static_cast<std::size_t>(m.from);
  const bool fits =
      m.data.defined() && m.data.type() == runtime::dtype::f32 && m.data.numel() == op.total;
  switch (m.part) {
  case local_part::input:
    if (local.computed || local.inputs[j].defined() || !fits)
      throw std::runtime_error("bad input from rank " + std::to_string(m.from));
    local.inputs[j] = std::move(m.data);
    ++local.inputs_have;
    return;
  case local_part::result:
    if (m.from != 0 || op.result_bytes != nullptr || !fits)
      throw std::runtime_error("bad result buffer from rank " + std::to_string(m.from));
    op.result = m.data.reshape(op.input.shape());
    // Every rank writes its own block through this pointer before anyone
    // hands the buffer out (each waits for every `done`): the one place
    // where the group bypasses copy on write.
    op.result_bytes = const_cast<char*>(static_cast<const char*>(op.result.raw_data()));
    return;
  case local_part::done:
    if (local.peer_done[j])
      throw std::runtime_error("duplicate completion notice from rank " + std::to_string(m.from));
    local.peer_done[j] = true;
    ++local.peers_done;
    return;
  }
  throw std::runtime_error("unknown local all-reduce message from rank " + std::to_string(m.from));
}

} // namespace

bool runs_locally(rank_actor* self, const op_state& op) {
  const auto& st = self->state;
  return op.kind == collective_kind::allreduce_ring && st.cfg.size > 1 && st.all_local;
}

void begin_local(rank_actor* self, std::int64_t id, op_state& op) {
  const int n = self->state.cfg.size;
  const int rank = self->state.cfg.rank;
  auto& local = op.local;
  local.active = true;
  op.steps = 0;
  local.inputs.assign(static_cast<std::size_t>(n), tensor{});
  local.inputs[static_cast<std::size_t>(rank)] = op.input;
  local.inputs_have = 1;
  local.peer_done.assign(static_cast<std::size_t>(n), false);
  if (rank == 0) {
    op.result = tensor::empty(op.input.type(), op.input.shape());
    op.result_bytes = static_cast<char*>(op.result.mutable_raw_data());
  }
  auto flat = op.input.reshape({op.total});
  for (int j = 0; j < n; ++j) {
    if (j == rank)
      continue;
    auto input = local_message(self, id, op, local_part::input);
    input.data = flat;
    send_local(self, j, std::move(input));
    if (rank == 0) {
      auto result = local_message(self, id, op, local_part::result);
      result.data = op.result.reshape({op.total});
      send_local(self, j, std::move(result));
    }
  }
}

void resume_local(rank_actor* self, op_iterator it) {
  auto& st = self->state;
  const auto id = it->first;
  try {
    auto first = st.local_stash.lower_bound(local_stash_key{id, local_part::input, 0});
    while (first != st.local_stash.end() && std::get<0>(first->first) == id) {
      auto m = std::move(first->second);
      first = st.local_stash.erase(first);
      absorb(it->second, m);
    }
    compute(self, id, it->second);
  } catch (const std::exception& e) {
    fail_rank(self, op_text(id, e.what()));
    return;
  }
  finish_if_done(self, it);
}

void on_local_message(rank_actor* self, local_allreduce_msg& m) {
  auto& st = self->state;
  const auto id = m.op;
  if (m.from < 0 || m.from >= st.cfg.size || m.from == st.cfg.rank) {
    fail_rank(self, op_text(id, "local all-reduce message from rank " + std::to_string(m.from) +
                                    " outside the group"));
    return;
  }
  auto it = st.ops.find(id);
  if (it == st.ops.end()) {
    auto from = m.from;
    if (!st.local_stash.emplace(local_stash_key{id, m.part, from}, std::move(m)).second)
      fail_rank(self, op_text(id, "duplicate message from rank " + std::to_string(from)));
    return;
  }
  try {
    absorb(it->second, m);
    compute(self, id, it->second);
  } catch (const std::exception& e) {
    fail_rank(self, op_text(id, e.what()));
    return;
  }
  finish_if_done(self, it);
}

} // namespace troupe::actors::collective_detail
