#include "actors/collectives/nccl_group.hpp"

#include <atomic>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <caf/event_based_actor.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>
#include <caf/spawn_options.hpp>
#include <caf/stateful_actor.hpp>

#include "actors/collectives/collective_failure.hpp"
#include "actors/collectives/nccl_op_header.hpp"
#include "actors/collectives/nccl_padding.hpp"
#include "kernels/gpu.hpp"
#include "runtime/net/caf_error.hpp"
#include "actors/protocol/messages.hpp"

// kernels/CMakeLists.txt defines TROUPE_HAVE_NCCL to 1 when the NCCL backend is built.
#ifndef TROUPE_HAVE_NCCL
#define TROUPE_HAVE_NCCL 0
#endif

#if TROUPE_HAVE_NCCL
#include "kernels/cuda/nccl_communicator.hpp"
#endif

namespace troupe::actors {

namespace {

std::string rank_name(int rank, int size) {
  return "nccl rank " + std::to_string(rank) + "/" + std::to_string(size);
}

caf::error plain_error(std::string text) {
  return caf::make_error(caf::sec::runtime_error, std::move(text));
}

} // namespace

namespace {

using kernels::collective_communicator;
using nccl::op_header;
using nccl::op_kind;
using runtime::tensor;

// Front -> its own worker (same process only).
using make_id_atom = caf::atom_constant<caf::atom("ncclmkid")>;
using init_atom = caf::atom_constant<caf::atom("ncclinit")>;
using run_atom = caf::atom_constant<caf::atom("ncclrun")>;

// --- the worker: owns the communicator, blocks in NCCL calls -----------------

struct worker_state {
  std::unique_ptr<collective_communicator> comm;
  static inline const char* name = "nccl_worker";
};

using worker_actor = caf::stateful_actor<worker_state>;

/// The result of one operation: the tensor, the payload bytes this rank
/// handed to NCCL and the number of NCCL collectives it issued.
struct op_result {
  tensor result;
  std::uint64_t bytes = 0;
  std::uint64_t calls = 0;
};

/// All-reduce's NCCL call; an error text, empty if fine.
std::string run_all_reduce(collective_communicator& comm, const tensor& input, op_result& out,
                           std::size_t& payload) {
  out.result = tensor::empty(runtime::dtype::f32, input.shape());
  auto count = payload = static_cast<std::size_t>(input.numel());
  if (auto e = comm.all_reduce_sum(input.raw_data(), out.result.mutable_raw_data(), count,
                                   runtime::dtype::f32);
      !e.empty())
    return e;
  out.bytes = input.nbytes();
  return {};
}

/// Broadcast's NCCL call from `root`, whose header is `src`.
std::string run_broadcast(collective_communicator& comm, const nccl_rank_config& cfg,
                          std::int32_t root, const op_header& src, const tensor& input,
                          op_result& out, std::size_t& payload) {
  bool is_root = cfg.rank == root;
  // The root answers with its own tensor (as the actor backend does).
  if (!is_root)
    out.result = tensor::empty(src.type, src.shape);
  auto count = payload = static_cast<std::size_t>(src.numel);
  if (auto e =
          comm.broadcast(is_root ? input.raw_data() : nullptr,
                         is_root ? nullptr : out.result.mutable_raw_data(), count, src.type, root);
      !e.empty())
    return e;
  if (is_root) {
    out.result = input;
    out.bytes = input.nbytes();
  }
  return {};
}

/// Reduce-scatter's NCCL call on the padded layout.
std::string run_reduce_scatter(collective_communicator& comm, const nccl_rank_config& cfg,
                               const tensor& input, op_result& out, std::size_t& payload) {
  constexpr std::size_t es = sizeof(float);
  auto layout = nccl::pad_partition(input.numel(), cfg.size);
  const auto& mine = layout.chunks[static_cast<std::size_t>(cfg.rank)];
  out.result = tensor::empty(runtime::dtype::f32, {mine.count});
  const void* send = input.raw_data();
  std::vector<unsigned char> packed;
  if (!layout.is_identity()) {
    packed.resize(static_cast<std::size_t>(layout.padded_numel()) * es);
    nccl::pack(layout, input.raw_data(), packed.data(), es);
    send = packed.data();
  }
  void* recv = out.result.mutable_raw_data();
  std::vector<unsigned char> slot;
  if (mine.count != layout.slot) {
    slot.resize(static_cast<std::size_t>(layout.slot) * es);
    recv = slot.data();
  }
  payload = static_cast<std::size_t>(layout.slot);
  if (auto e = comm.reduce_scatter_sum(send, recv, payload, runtime::dtype::f32); !e.empty())
    return e;
  if (!slot.empty() && mine.count > 0)
    std::memcpy(out.result.mutable_raw_data(), slot.data(),
                static_cast<std::size_t>(mine.count) * es);
  out.bytes = static_cast<std::uint64_t>(layout.padded_numel()) * es;
  return {};
}

/// All-gather's NCCL call on the padded layout of every rank's header.
std::string run_all_gather(collective_communicator& comm, const std::vector<op_header>& headers,
                           const tensor& input, op_result& out, std::size_t& payload) {
  auto type = headers.front().type;
  auto es = runtime::element_size(type);
  std::vector<std::int64_t> counts;
  for (const auto& h : headers)
    counts.push_back(h.numel);
  auto layout = nccl::pad_counts(counts);
  auto slot_bytes = static_cast<std::size_t>(layout.slot) * es;
  out.result = tensor::empty(type, nccl::all_gather_shape(headers));
  const void* send = input.raw_data();
  std::vector<unsigned char> own;
  if (input.numel() != layout.slot) { // pad this rank's part to the slot
    own.assign(slot_bytes, 0);
    if (input.nbytes() > 0)
      std::memcpy(own.data(), input.raw_data(), input.nbytes());
    send = own.data();
  }
  void* recv = out.result.mutable_raw_data();
  std::vector<unsigned char> padded;
  if (!layout.is_identity()) {
    padded.resize(static_cast<std::size_t>(layout.padded_numel()) * es);
    recv = padded.data();
  }
  payload = static_cast<std::size_t>(layout.slot);
  if (auto e = comm.all_gather(send, recv, payload, type); !e.empty())
    return e;
  if (!padded.empty())
    nccl::unpack(layout, padded.data(), out.result.mutable_raw_data(), es);
  out.bytes = slot_bytes;
  return {};
}

/// Runs one operation on every rank's behalf: header exchange, checks, payload.
caf::expected<op_result> run_op(collective_communicator& comm, const nccl_rank_config& cfg,
                                op_kind kind, std::int64_t op, std::int32_t root,
                                const tensor& input) {
  auto n = static_cast<std::size_t>(cfg.size);
  op_result out;

  // 1. Every rank's header, so that all ranks check the same facts.
  auto words = nccl::encode(op_header::of(kind, op, root, input));
  std::vector<std::int64_t> all_words(nccl::header_words * n);
  if (auto e =
          comm.all_gather(words.data(), all_words.data(), nccl::header_words, runtime::dtype::i64);
      !e.empty())
    return plain_error("header exchange: " + e);
  ++out.calls;
  std::vector<op_header> headers;
  for (std::size_t r = 0; r < n; ++r) {
    auto h = nccl::decode({all_words.data() + r * nccl::header_words, nccl::header_words});
    if (!h)
      return plain_error("malformed operation header from rank " + std::to_string(r) +
                         " (a different troupe build?)");
    headers.push_back(std::move(*h));
  }
  if (auto what = nccl::check_headers(headers, cfg.rank); !what.empty())
    return plain_error(what);

  // 2. The payload (payload: elements NCCL moves; 0 skips the call on every rank).
  std::size_t payload = 0;
  std::string e;
  switch (kind) {
  case op_kind::all_reduce:
    e = run_all_reduce(comm, input, out, payload);
    break;
  case op_kind::broadcast:
    e = run_broadcast(comm, cfg, root, headers[static_cast<std::size_t>(root)], input, out,
                      payload);
    break;
  case op_kind::reduce_scatter:
    e = run_reduce_scatter(comm, cfg, input, out, payload);
    break;
  case op_kind::all_gather:
    e = run_all_gather(comm, headers, input, out, payload);
    break;
  }
  if (!e.empty())
    return plain_error(e);
  if (payload > 0)
    ++out.calls;
  return out;
}

/// The communicator a rank uses: the configured one, else NCCL's.
std::unique_ptr<collective_communicator>
make_communicator(const nccl_rank_config& cfg, std::shared_ptr<const std::atomic<bool>> abort) {
  if (cfg.communicator)
    return cfg.communicator(cfg.device.index(), std::move(abort), cfg.timeout);
#if TROUPE_HAVE_NCCL
  return std::make_unique<kernels::cuda::nccl_communicator>(cfg.device.index(), std::move(abort),
                                                            cfg.timeout);
#else
  return nullptr; // spawn_nccl_rank refuses this case
#endif
}

caf::behavior nccl_worker(worker_actor* self, nccl_rank_config cfg,
                          std::shared_ptr<const std::atomic<bool>> abort) {
  self->state.comm = make_communicator(cfg, std::move(abort));
  if (!self->state.comm) {
    self->quit(plain_error("no communicator"));
    return {};
  }
  return {
      [self](make_id_atom) -> caf::result<std::string> {
        std::string id;
        if (auto e = self->state.comm->make_unique_id(id); !e.empty())
          return plain_error(e);
        return id;
      },
      [self, cfg](init_atom, const std::string& id) -> caf::result<void> {
        if (auto e = self->state.comm->init(cfg.rank, cfg.size, id); !e.empty())
          return plain_error(e);
        return caf::unit;
      },
      [self, cfg](run_atom, std::int32_t kind, std::int64_t op, std::int32_t root,
                  const tensor& input) -> caf::result<tensor, std::uint64_t, std::uint64_t> {
        try {
          auto r = run_op(*self->state.comm, cfg, static_cast<op_kind>(kind), op, root, input);
          if (!r)
            return std::move(r.error());
          return {std::move(r->result), r->bytes, r->calls};
        } catch (const std::exception& e) {
          return plain_error(e.what());
        }
      },
  };
}

// --- the front: the collective protocol --------------------------------------

struct pending_request {
  op_kind kind = op_kind::all_reduce;
  std::int32_t root = 0;
  tensor input;
  caf::response_promise rp;
};

struct rank_state {
  nccl_rank_config cfg;
  std::vector<caf::actor> ranks;
  caf::actor worker;
  /// Set when the rank fails: a NCCL call waiting on the worker aborts.
  std::shared_ptr<std::atomic<bool>> abort;
  std::string unique_id;
  bool have_id = false;
  bool started = false; ///< the worker was asked to create the communicator
  bool failed = false;
  std::map<std::int64_t, pending_request> waiting; ///< requested, not yet run
  std::map<std::int64_t, caf::response_promise> running;
  /// Op ids in the order the group runs them: rank 0 appends its callers'
  /// requests, the others rank 0's announcements.
  std::deque<std::int64_t> order;
  std::int64_t seq = 0; ///< next announcement to send (rank 0) or expect
  actors::collective_stats stats;
  static inline const char* name = "nccl_rank";

  rank_state() = default;
  rank_state(const rank_state&) = delete;
  rank_state& operator=(const rank_state&) = delete;
  /// The rank is gone: a NCCL call still in flight can never be matched by
  /// this rank again, so it aborts; the worker stops either way.
  ~rank_state() {
    if (abort && !running.empty())
      abort->store(true, std::memory_order_release);
    if (worker)
      caf::anon_send_exit(worker, caf::exit_reason::user_shutdown);
  }
};

using rank_actor = caf::stateful_actor<rank_state>;

std::string label(rank_actor* self) {
  const auto& c = self->state.cfg;
  return rank_name(c.rank, c.size) + " (" + runtime::to_string(c.device) + ")";
}

/// Fails every pending operation with `err`, aborts a NCCL call in flight and
/// quits with `err`, so that the peers fail at once too.
void fail_all(rank_actor* self, const caf::error& err) {
  auto& st = self->state;
  if (st.failed)
    return;
  st.failed = true;
  st.abort->store(true, std::memory_order_release);
  for (auto& [id, req] : st.waiting)
    req.rp.deliver(err);
  for (auto& [id, rp] : st.running)
    rp.deliver(err);
  st.waiting.clear();
  st.running.clear();
  st.order.clear();
  self->quit(err);
}

/// As the actor backend: sec::runtime_error with context (text, int32 rank
/// where the failure began, cause).
caf::error fail_rank(rank_actor* self, const std::string& what) {
  auto err = rank_failure(label(self) + ": " + what, self->state.cfg.rank);
  fail_all(self, err);
  return err;
}

/// Hands the operations whose turn has come to the worker, in the group's order.
void dispatch(rank_actor* self) {
  auto& st = self->state;
  if (!st.started || st.failed)
    return;
  while (!st.order.empty()) {
    auto id = st.order.front();
    auto it = st.waiting.find(id);
    if (it == st.waiting.end())
      return; // its request has not arrived here yet
    st.order.pop_front();
    if (st.cfg.rank == 0) {
      auto seq = st.seq++;
      for (std::size_t r = 1; r < st.ranks.size(); ++r)
        self->send(st.ranks[r], nccl_order_atom::value, seq, id);
    }
    auto req = std::move(it->second);
    st.waiting.erase(it);
    st.running.emplace(id, std::move(req.rp));
    self->request(st.worker, caf::infinite, run_atom::value, static_cast<std::int32_t>(req.kind),
                  id, req.root, std::move(req.input))
        .then(
            [self, id](tensor& result, std::uint64_t bytes, std::uint64_t calls) {
              auto& st = self->state;
              auto rit = st.running.find(id);
              if (rit == st.running.end())
                return;
              st.stats.bytes_sent += bytes;
              st.stats.messages_sent += calls;
              ++st.stats.ops_completed;
              rit->second.deliver(std::move(result));
              st.running.erase(rit);
            },
            [self, id](caf::error& e) {
              fail_rank(self, op_text(id, runtime::describe(self->system(), e)));
            });
  }
}

/// Asks the worker to join the communicator; operations may follow at once
/// (the worker runs its messages in order).
void start_comm(rank_actor* self) {
  auto& st = self->state;
  st.started = true;
  self->request(st.worker, caf::infinite, init_atom::value, st.unique_id)
      .then([] {},
            [self](caf::error& e) {
              fail_rank(self, "creating the NCCL communicator failed: " +
                                  runtime::describe(self->system(), e));
            });
  dispatch(self);
}

caf::result<tensor> start(rank_actor* self, op_kind kind, std::int64_t id, std::int32_t root,
                          tensor input) {
  auto& st = self->state;
  if (st.ranks.empty())
    return plain_error(label(self) + ": " + op_text(id, "not wired"));
  if (st.waiting.count(id) != 0 || st.running.count(id) != 0)
    return fail_rank(self,
                     op_text(id, "an operation with this id is already pending on this rank"));
  if (input.defined() && !input.where().is_cpu())
    return fail_rank(self, op_text(id, "tensors on " + runtime::to_string(input.where()) +
                                           " are not supported (the rank stages CPU tensors)"));
  auto rp = self->make_response_promise();
  st.waiting.emplace(id, pending_request{kind, root, std::move(input), rp});
  if (st.cfg.rank == 0)
    st.order.push_back(id);
  dispatch(self);
  return rp;
}

/// A monitored actor ended: the worker (fails the rank) or a peer (orderly
/// teardown when nothing is pending, else the group fails).
void on_down(rank_actor* self, const caf::down_msg& dm) {
  auto& st = self->state;
  if (dm.source == st.worker.address()) {
    fail_rank(self, "NCCL worker stopped (" + self->system().render(dm.reason) + ")");
    return;
  }
  int who = rank_index(st.ranks, dm.source);
  if (who < 0)
    return;
  if (orderly_exit(dm.reason) && st.waiting.empty() && st.running.empty()) {
    self->quit(dm.reason);
    return;
  }
  fail_all(self, peer_death_error(self->system(), label(self), who, dm.reason,
                                  st.waiting.size() + st.running.size()));
}

/// (wire_atom, ranks): the group, once; rank 0 then hands out the NCCL id.
caf::result<void> wire(rank_actor* self, std::vector<caf::actor> ranks) {
  auto& st = self->state;
  if (!st.ranks.empty())
    return plain_error(label(self) + ": wired twice");
  if (static_cast<int>(ranks.size()) != st.cfg.size ||
      ranks[static_cast<std::size_t>(st.cfg.rank)] != caf::actor_cast<caf::actor>(self))
    return plain_error(label(self) + ": wiring does not match the rank and size");
  st.ranks = std::move(ranks);
  for (std::size_t i = 0; i < st.ranks.size(); ++i)
    if (static_cast<int>(i) != st.cfg.rank)
      self->monitor(st.ranks[i]);
  if (st.cfg.rank == 0) {
    self->request(st.worker, caf::infinite, make_id_atom::value)
        .then(
            [self](std::string& id) {
              auto& st = self->state;
              for (std::size_t r = 1; r < st.ranks.size(); ++r)
                self->send(st.ranks[r], nccl_id_atom::value, id);
              st.unique_id = std::move(id);
              st.have_id = true;
              start_comm(self);
            },
            [self](caf::error& e) { fail_rank(self, runtime::describe(self->system(), e)); });
  } else if (st.have_id) {
    start_comm(self);
  }
  return caf::unit;
}

caf::behavior nccl_rank(rank_actor* self, nccl_rank_config cfg) {
  auto& st = self->state;
  st.cfg = cfg;
  st.stats.rank = cfg.rank;
  st.stats.size = cfg.size;
  st.abort = std::make_shared<std::atomic<bool>>(false);
  st.worker = self->system().spawn<caf::detached>(
      nccl_worker, cfg, std::shared_ptr<const std::atomic<bool>>(st.abort));
  self->monitor(st.worker);
  self->set_down_handler([self](caf::down_msg& dm) { on_down(self, dm); });
  return {
      [self](actors::wire_atom, std::vector<caf::actor> ranks) {
        return wire(self, std::move(ranks));
      },
      [self](nccl_id_atom, std::string& id) {
        auto& st = self->state;
        if (st.cfg.rank == 0 || st.have_id) {
          fail_rank(self, "unexpected NCCL unique id (only rank 0 sends one, once)");
          return;
        }
        st.unique_id = std::move(id);
        st.have_id = true;
        if (!st.ranks.empty())
          start_comm(self);
      },
      [self](nccl_order_atom, std::int64_t seq, std::int64_t id) {
        auto& st = self->state;
        if (st.cfg.rank == 0 || seq != st.seq) {
          fail_rank(self, "unexpected op order " + std::to_string(seq) + " (op " +
                              std::to_string(id) + "), expected " + std::to_string(st.seq) +
                              " from rank 0");
          return;
        }
        ++st.seq;
        st.order.push_back(id);
        dispatch(self);
      },
      [self](actors::allreduce_atom, std::int64_t id, tensor t) {
        return start(self, op_kind::all_reduce, id, 0, std::move(t));
      },
      [self](actors::broadcast_atom, std::int64_t id, std::int32_t root, tensor t) {
        return start(self, op_kind::broadcast, id, root, std::move(t));
      },
      [self](actors::reduce_scatter_atom, std::int64_t id, tensor t) {
        return start(self, op_kind::reduce_scatter, id, 0, std::move(t));
      },
      [self](actors::all_gather_atom, std::int64_t id, tensor t) {
        return start(self, op_kind::all_gather, id, 0, std::move(t));
      },
      [self](actors::coll_stats_atom) { return self->state.stats; },
  };
}

} // namespace

caf::expected<caf::actor> spawn_nccl_rank(caf::actor_system& sys, nccl_rank_config cfg) {
  auto who = rank_name(cfg.rank, cfg.size);
  if (cfg.size < 1 || cfg.rank < 0 || cfg.rank >= cfg.size)
    return plain_error(who + ": bad rank or size");
  if (cfg.timeout.count() < 0)
    return plain_error(who + ": negative timeout");
  if (!cfg.communicator) {
    if (!TROUPE_HAVE_NCCL)
      return plain_error(who +
                         ": NCCL backend not compiled in (this build found no CUDA or no NCCL)");
    if (!cfg.device.is_cuda())
      return plain_error(who + ": " + runtime::to_string(cfg.device) + " is not a CUDA device");
    auto probe = kernels::probe_gpus();
    if (probe.usable_devices < 1)
      return plain_error(who + ": no CUDA device: " + probe.reason);
    if (cfg.device.index() < 0 || cfg.device.index() >= probe.usable_devices)
      return plain_error(who + ": " + runtime::to_string(cfg.device) +
                         " not present (this process sees " + std::to_string(probe.usable_devices) +
                         " CUDA device(s))");
  }
  return sys.spawn(nccl_rank, std::move(cfg));
}

caf::expected<std::vector<caf::actor>> spawn_nccl_group(caf::actor_system& sys,
                                                        const std::vector<runtime::device>& devices,
                                                        nccl_rank_config base) {
  if (devices.empty())
    return plain_error("spawn_nccl_group: no devices");
  std::vector<caf::actor> ranks;
  auto stop_all = [&ranks] {
    for (auto& r : ranks)
      caf::anon_send_exit(r, caf::exit_reason::user_shutdown);
  };
  int n = static_cast<int>(devices.size());
  for (int r = 0; r < n; ++r) {
    auto cfg = base;
    cfg.rank = r;
    cfg.size = n;
    cfg.device = devices[static_cast<std::size_t>(r)];
    auto rank = spawn_nccl_rank(sys, cfg);
    if (!rank) {
      stop_all();
      return std::move(rank.error());
    }
    ranks.push_back(std::move(*rank));
  }
  caf::scoped_actor self{sys};
  std::string failure;
  for (auto& r : ranks) {
    self->request(r, std::chrono::seconds(30), actors::wire_atom::value, ranks)
        .receive([] {}, [&](caf::error& e) { failure = runtime::describe(sys, e); });
    if (!failure.empty()) {
      stop_all();
      return plain_error("wiring the NCCL group failed: " + failure);
    }
  }
  return ranks;
}

} // namespace troupe::actors
