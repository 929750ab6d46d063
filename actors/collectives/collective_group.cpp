#include "actors/collectives/collective_group.hpp"

#include <algorithm>
#include <string>
#include <utility>

#include <caf/event_based_actor.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>

#include "actors/collectives/collective_failure.hpp"
#include "actors/collectives/collective_pieces.hpp"
#include "actors/collectives/collective_plan_run.hpp"
#include "actors/collectives/collective_rank_state.hpp"
#include "actors/collectives/local_allreduce.hpp"
#include "runtime/error.hpp"
#include "actors/protocol/messages.hpp"

namespace troupe::actors {

namespace collective_detail {

rank_state::~rank_state() {
  if (shared)
    shared->abort("collective rank 0/" + std::to_string(cfg.size) + " of the group ended");
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

std::string label(rank_actor* self) {
  return "collective rank " + std::to_string(self->state.cfg.rank) + "/" +
         std::to_string(self->state.cfg.size);
}

bool same_process(rank_actor* self, const caf::actor& a) {
  return a.node() == self->node();
}

void fail_all(rank_actor* self, const caf::error& err) {
  auto& st = self->state;
  for (auto& [id, op] : st.ops)
    op.rp.deliver(err);
  st.ops.clear();
  st.stash.clear();
  st.local_stash.clear();
  self->quit(err);
}

caf::error fail_rank(rank_actor* self, const std::string& what) {
  auto err = rank_failure(label(self) + ": " + what, self->state.cfg.rank);
  fail_all(self, err);
  return err;
}

void finish_if_done(rank_actor* self, op_iterator it) {
  auto& st = self->state;
  auto& op = it->second;
  const bool done = op.local.active ? op.local.computed && op.local.peers_done >= st.cfg.size - 1
                                    : op.done_segs >= op.segs;
  if (!done)
    return;
  auto result = op.local.active ? op.result : result_of(self, op);
  ++st.stats.ops_completed;
  op.rp.deliver(std::move(result));
  st.ops.erase(it);
}

} // namespace collective_detail

namespace {

using namespace collective_detail;

/// The plan of `kind` (rooted at `root` for a broadcast), made once per rank.
const coll::collective_plan& plan_for(rank_actor* self, collective_kind kind, std::int32_t root) {
  auto& st = self->state;
  auto key = std::make_pair(kind, kind == collective_kind::broadcast ? root : 0);
  auto it = st.plans.find(key);
  if (it != st.plans.end())
    return it->second;
  int n = st.cfg.size;
  coll::collective_plan p;
  switch (kind) {
  case collective_kind::allreduce_ring:
    p = coll::ring_allreduce(n);
    break;
  case collective_kind::allreduce_tree:
    p = coll::tree_allreduce(n);
    break;
  case collective_kind::reduce_scatter:
    p = coll::ring_reduce_scatter(n);
    break;
  case collective_kind::all_gather:
    p = coll::ring_all_gather(n);
    break;
  default:
    p = coll::binomial_broadcast(n, root);
    break;
  }
  return st.plans.emplace(key, std::move(p)).first->second;
}

/// What is wrong with a request to start op `id`; empty if nothing.
std::string check_request(const rank_state& st, const op_state& op, std::int64_t id) {
  const int n = st.cfg.size;
  if (st.ops.count(id) != 0)
    return "an operation with this id is already pending on this rank";
  if (op.kind == collective_kind::broadcast && (op.root < 0 || op.root >= n))
    return "broadcast root " + std::to_string(op.root) + " out of range";
  if (holds_input(op, st.cfg.rank) && !op.input.defined())
    return to_string(op.kind) + " of an undefined tensor";
  const bool f32_only =
      op.kind == collective_kind::allreduce_ring || op.kind == collective_kind::reduce_scatter;
  if (f32_only && op.input.type() != runtime::dtype::f32)
    return to_string(op.kind) + " supports f32 tensors only";
  return {};
}

/// Starts op `id` for the caller's request; the caller gets the result or an error.
caf::result<tensor> start(rank_actor* self, collective_kind kind, std::int64_t id,
                          std::int32_t root, tensor input) {
  auto& st = self->state;
  if (st.ranks.empty())
    return caf::make_error(caf::sec::runtime_error, label(self) + ": " + op_text(id, "not wired"));
  op_state op;
  op.kind = kind;
  op.root = root;
  op.input = std::move(input);
  if (auto what = check_request(st, op, id); !what.empty())
    return fail_rank(self, op_text(id, what));
  if (kind == collective_kind::allreduce_ring &&
      coll::choose_allreduce(op.input.nbytes(), st.cfg.size, st.cfg.tree_threshold_bytes,
                             st.cfg.algo) == coll::allreduce_algo::tree)
    op.kind = collective_kind::allreduce_tree;
  if (op.kind != collective_kind::broadcast)
    op.root = 0;
  try {
    op.plan = &plan_for(self, op.kind, root);
  } catch (const std::exception& e) {
    return fail_rank(self, op_text(id, e.what()));
  }
  op.rp = self->make_response_promise();
  lay_out(self, op);
  const bool local = runs_locally(self, op);
  if (local)
    begin_local(self, id, op);
  else
    add_result_buffer(self, op);
  auto rp = op.rp;
  auto it = st.ops.emplace(id, std::move(op)).first;
  if (local)
    resume_local(self, it);
  else
    run_plan(self, id);
  return rp;
}

/// A monitored peer ended: orderly teardown when nothing is pending, else the
/// whole group fails with an error naming the rank that died first.
void on_peer_down(rank_actor* self, const caf::down_msg& dm) {
  auto& st = self->state;
  int who = rank_index(st.ranks, dm.source);
  if (who < 0)
    return;
  if (orderly_exit(dm.reason) && st.ops.empty()) {
    self->quit(dm.reason);
    return;
  }
  fail_all(self, peer_death_error(self->system(), label(self), who, dm.reason, st.ops.size()));
}

/// (wire_atom, ranks): the group, once, before any op.
caf::result<void> wire(rank_actor* self, std::vector<caf::actor> ranks) {
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
}

/// (shared_reduction_atom): the group's shared reduction when every rank
/// lives in this process (rank 0 owns it; the others ask rank 0), else null.
caf::result<shared_reduction_ref> shared_reduction_of(rank_actor* self) {
  auto& st = self->state;
  if (!st.all_local || st.cfg.size < 2)
    return shared_reduction_ref{};
  if (st.cfg.rank != 0) {
    auto rp = self->make_response_promise<shared_reduction_ref>();
    self->request(st.ranks.front(), caf::infinite, actors::shared_reduction_atom::value)
        .then([rp](shared_reduction_ref& ref) mutable { rp.deliver(std::move(ref)); },
              [rp](caf::error& e) mutable { rp.deliver(std::move(e)); });
    return rp;
  }
  if (!st.shared)
    st.shared = std::make_shared<shared_reduction>(st.cfg.size);
  return shared_reduction_ref{st.shared};
}

caf::behavior collective_rank(rank_actor* self, collective_config cfg) {
  self->state.cfg = cfg;
  self->state.stats.rank = cfg.rank;
  self->state.stats.size = cfg.size;
  self->set_down_handler([self](caf::down_msg& dm) { on_peer_down(self, dm); });
  return {
      [self](actors::wire_atom, std::vector<caf::actor> ranks) {
        return wire(self, std::move(ranks));
      },
      [self](collective_msg& m) { on_plan_message(self, m); },
      [self](local_allreduce_msg& m) { on_local_message(self, m); },
      [self](actors::allreduce_atom, std::int64_t id, tensor t) {
        return start(self, collective_kind::allreduce_ring, id, 0, std::move(t));
      },
      [self](actors::broadcast_atom, std::int64_t id, std::int32_t root, tensor t) {
        return start(self, collective_kind::broadcast, id, root, std::move(t));
      },
      [self](actors::reduce_scatter_atom, std::int64_t id, tensor t) {
        return start(self, collective_kind::reduce_scatter, id, 0, std::move(t));
      },
      [self](actors::all_gather_atom, std::int64_t id, tensor t) {
        return start(self, collective_kind::all_gather, id, 0, std::move(t));
      },
      [self](actors::coll_stats_atom) { return self->state.stats; },
      [self](actors::shared_reduction_atom) { return shared_reduction_of(self); },
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
    self->request(r, caf::infinite, actors::wire_atom::value, ranks)
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
