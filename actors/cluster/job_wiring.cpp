#include "actors/cluster/job_wiring.hpp"

#include <chrono>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>

#include "actors/cluster/balancing.hpp"
#include "actors/cluster/recovery.hpp"
#include "actors/protocol/messages.hpp"
#include "actors/training/trainer.hpp"
#include "runtime/net/caf_error.hpp"
#include "runtime/net/transport/courier.hpp"

namespace troupe::actors {

namespace {

constexpr std::chrono::seconds wire_timeout{30};

/// Counts the wiring replies of one job and aborts it on the first failure.
struct wiring {
  supervisor_actor* self;
  std::uint64_t job; ///< the generation's wire id
  std::shared_ptr<std::size_t> left = std::make_shared<std::size_t>(0);
  std::function<void()> wired;

  /// Sends `xs` to `to`, which answers a `Reply` (void: nothing); `what`
  /// names the step if it fails.
  template <class Reply, class... Ts>
  void ask(const caf::actor& to, const std::string& what, Ts&&... xs) {
    ++*left;
    auto ok = [left = left, wired = wired] {
      if (--*left == 0)
        wired();
    };
    auto failed = [self = self, wire = job, what](caf::error& err) {
      if (self->state.job.wire() != wire)
        return;
      failure f;
      f.what = what + ": " + runtime::describe(self->system(), err);
      job_failed(self, std::move(f));
    };
    auto req = self->request(to, wire_timeout, std::forward<Ts>(xs)...);
    if constexpr (std::is_void_v<Reply>)
      req.then([ok]() { ok(); }, failed);
    else
      req.then([ok](Reply) { ok(); }, failed);
  }
};

/// A collective group: `size` consecutive actors of `ranks` from `first`.
std::vector<caf::actor> group_of(const std::vector<caf::actor>& ranks, std::size_t first,
                                 std::size_t size) {
  return {ranks.begin() + static_cast<std::ptrdiff_t>(first),
          ranks.begin() + static_cast<std::ptrdiff_t>(first + size)};
}

} // namespace

job_actors::job_actors(const std::vector<spawn_order>& orders) {
  devices.resize(count_role(orders, spawn_role::device));
  shards.resize(count_role(orders, spawn_role::shard));
  dp_ranks.resize(count_role(orders, spawn_role::dp_rank));
  tp_ranks.resize(count_role(orders, spawn_role::tp_rank));
  ps.resize(count_role(orders, spawn_role::ps));
  loaders.resize(count_role(orders, spawn_role::loader));
  left = orders.size();
}

caf::actor& job_actors::at(const spawn_order& o) {
  switch (o.role) {
  case spawn_role::device:
    return devices.at(o.index);
  case spawn_role::shard:
    return shards.at(o.index);
  case spawn_role::tp_rank:
    return tp_ranks.at(o.index);
  case spawn_role::dp_rank:
    return dp_ranks.at(o.index);
  case spawn_role::loader:
    return loaders.at(o.index);
  case spawn_role::ps:
    break;
  }
  return ps.at(o.index);
}

void wire_job(supervisor_actor* self, const job_actors& spawned, std::function<void()> wired) {
  const auto& topology = self->state.job.topology;
  const auto grid = topology.grid();
  const auto n = static_cast<std::size_t>(topology.depth());
  const auto replicas = static_cast<std::size_t>(grid.replicas);
  const auto tp = static_cast<std::size_t>(grid.tp);
  const auto& shards = spawned.shards;
  wiring w{self, self->state.job.wire(), std::make_shared<std::size_t>(1), std::move(wired)};
  // With looped virtual stages the pipeline wraps round: the last stage's
  // chunk v feeds stage 0's chunk v + 1, so the ends are each other's
  // neighbours. In the V layout (zbv) the last stage feeds itself instead.
  const bool ring = topology.virtual_stages > 1 &&
                    actors::layout_of(topology.schedule) == actors::chunk_layout::looped;
  // Rank t of stage k talks to rank t of stages k - 1 and k + 1 (tensor-
  // parallel ranks hold identical activations at stage boundaries).
  for (std::size_t j = 0; j < shards.size(); ++j) {
    const auto& s = topology.stages[j];
    const auto k = static_cast<std::size_t>(s.stage);
    auto at = [&](std::size_t stage) {
      return shards[grid.index({s.replica, static_cast<int>(stage), s.tp_rank})];
    };
    w.ask<bool>(shards[j], "wiring " + grid.name(s.id()), actors::wire_atom::value,
                spawned.devices[s.device], k > 0 || ring ? at((k + n - 1) % n) : caf::actor{},
                k + 1 < n || ring ? at((k + 1) % n) : caf::actor{});
  }
  // Data parallelism: rank t of stage k of every replica forms a collective
  // group (contiguous in dp_ranks); each shard learns its rank, and whether
  // its device thread may wait in the group's shared reduction: only where
  // no member's device runs another shard, which the wait would block.
  std::vector<int> shards_on(topology.devices.size(), 0);
  for (const auto& s : topology.stages)
    ++shards_on[s.device];
  for (std::size_t g = 0; g < n * tp && !spawned.dp_ranks.empty(); ++g) {
    auto group = group_of(spawned.dp_ranks, g * replicas, replicas);
    auto slot_of = [&](std::size_t r) {
      return slot_id{static_cast<int>(r), static_cast<int>(g / tp), static_cast<int>(g % tp)};
    };
    bool devices_own = true;
    for (std::size_t r = 0; r < replicas; ++r)
      devices_own &= shards_on[topology.stages[grid.index(slot_of(r))].device] == 1;
    for (std::size_t r = 0; r < replicas; ++r) {
      const auto slot = slot_of(r);
      auto what = "wiring the all-reduce group of " + grid.name(slot);
      w.ask<void>(group[r], what, actors::wire_atom::value, group);
      w.ask<bool>(shards[grid.index(slot)], what, actors::dp_group_atom::value, group[r],
                  devices_own);
    }
  }
  // Tensor parallelism: the tp shards of one stage of one replica form a
  // collective group their split layers all-reduce through.
  for (std::size_t g = 0; g < replicas * n && !spawned.tp_ranks.empty(); ++g) {
    auto group = group_of(spawned.tp_ranks, g * tp, tp);
    for (std::size_t t = 0; t < tp; ++t) {
      const auto slot = grid.at(g * tp + t);
      auto what = "wiring the tensor-parallel group of " + grid.name(slot);
      w.ask<void>(group[t], what, actors::wire_atom::value, group);
      w.ask<bool>(shards[g * tp + t], what, actors::tp_group_atom::value, group[t]);
    }
  }
  // Parameter servers: every worker shard learns all ps shards.
  for (std::size_t j = 0; j < shards.size() && !spawned.ps.empty(); ++j)
    w.ask<bool>(shards[j], "giving the parameter servers to " + grid.name(topology.stages[j].id()),
                actors::ps_group_atom::value, spawned.ps);
  // Released once every request is out, so replies cannot finish it early.
  if (--*w.left == 0)
    w.wired();
}

void start_trainer(supervisor_actor* self, const job_actors& spawned, const job_inputs& in,
                   std::optional<runtime::checkpoint> resume) {
  auto& st = self->state;
  const auto& topology = st.job.topology;
  const auto& opts = st.job.opts;
  auto& sys = self->system();
  trainer_config tc;
  tc.courier = st.cfg.courier ? st.cfg.courier->for_job(st.job.wire()) : nullptr;
  tc.recent_split_moves = recent_split_moves(st.job);
  if (in.data_from == data_source::nodes) {
    const auto replicas = static_cast<std::size_t>(topology.replicas);
    tc.train_loaders.assign(spawned.loaders.begin(),
                            spawned.loaders.begin() + static_cast<std::ptrdiff_t>(replicas));
    if (opts.evaluate)
      tc.test_loader = spawned.loaders.at(replicas);
  } else {
    // The loaders run here and send every input to the nodes.
    auto spawn_loader = [&](loader_config c, const dataset& data, std::string label) {
      c.data = data;
      c.transform = in.data.transform;
      c.real_targets = in.data.real_targets;
      c.courier = tc.courier;
      return track(self, spawn_data_loader(sys, std::move(c)), std::move(label), "data_loader",
                   st.cfg.name);
    };
    for (int r = 0; r < topology.replicas; ++r)
      tc.train_loaders.push_back(spawn_loader(
          train_loader_config(topology, opts, r), in.data.train_set,
          topology.replicas == 1 ? std::string{"data_loader (train)"}
                                 : "data_loader (train, replica " + std::to_string(r) + ")"));
    if (opts.evaluate)
      tc.test_loader = spawn_loader(test_loader_config(topology, in.test_samples()),
                                    in.data.test_set, "data_loader (test)");
  }
  if (opts.evaluate)
    tc.test_batch = test_loader_config(topology, in.test_samples()).batch;
  tc.input_normalization = in.data_summary.value("normalization", nlohmann::json{});
  tc.interrupt = in.interrupt;
  tc.opts = opts;
  tc.topology = topology;
  tc.stages = spawned.shards;
  tc.ps_shards = spawned.ps;
  tc.train_samples = in.train_samples();
  tc.test_samples = in.test_samples();
  tc.resume = std::move(resume);
  tc.report_to = caf::actor_cast<caf::actor>(self);
  st.job.trainer =
      track(self, spawn_trainer(sys, std::move(tc)), "trainer", "trainer", st.cfg.name);
  st.job.phase = job_phase::running;
}

} // namespace troupe::actors
