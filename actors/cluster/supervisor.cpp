#include "actors/cluster/supervisor.hpp"

#include <unistd.h>

#include <filesystem>
#include <map>
#include <set>
#include <thread>
#include <tuple>
#include <utility>

#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>

#include "actors/cluster/cluster_protocol.hpp"
#include "actors/plan/collective_backend.hpp"
#include "actors/collectives/collective_group.hpp"
#include "actors/pipeline/data_loader.hpp"
#include "actors/pipeline/device_actor.hpp"
#include "actors/pipeline/layer_shard.hpp"
#include "actors/cluster/node_agent.hpp"
#include "actors/plan/plan.hpp"
#include "actors/plan/plan_memory.hpp"
#include "actors/ps/ps_shard.hpp"
#include "actors/training/trainer.hpp"
#include "kernels/gpu.hpp"
#include "models/train/sequence_loss.hpp"
#include "runtime/net/caf_error.hpp"
#include "runtime/net/security/certs.hpp"
#include "runtime/error.hpp"
#include "runtime/io/file_util.hpp"
#include "runtime/io/idx.hpp"
#include "runtime/log.hpp"
#include "runtime/net/messages.hpp"
#include "runtime/net/security/node_identity.hpp"
#include "runtime/telemetry/prometheus.hpp"
#include "runtime/net/system_config.hpp"
#include "runtime/io/text_dataset.hpp"
#include "runtime/net/transport/courier.hpp"

namespace troupe::actors {
namespace {
/// Work handed back into the supervisor from another thread (the courier's
/// io thread): never serialised.
struct deferred {
  std::function<void()> run;
};
} // namespace
} // namespace troupe::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::actors::deferred)

namespace troupe::actors {

namespace {

using clock_type = std::chrono::steady_clock;
using tick_atom = caf::atom_constant<caf::atom("tick")>;
using join_timeout_atom = caf::atom_constant<caf::atom("jointmo")>;

/// A node that proved its identity and (once ready) offers its devices.
struct node_entry {
  node_description info;
  caf::actor agent;   ///< set by ready
  caf::actor courier; ///< its data plane's descriptor endpoint
  std::string data_host;
  std::uint16_t data_port = 0;
  bool ready = false;
  bool ping_outstanding = false;
  clock_type::time_point last_seen = clock_type::now();
  nlohmann::json last_ping = nlohmann::json::object();
};

/// One job actor: what /status shows and what a failure names.
struct job_actor {
  std::string label;
  std::string kind;
  std::string node;
  caf::actor handle;
};

struct job_state {
  std::uint64_t id = 0;
  std::string phase = "idle"; ///< idle | waiting | starting | running
  caf::response_promise reply;
  caf::actor client; ///< who submitted it: the job is aborted if it goes away
  std::string options_json;
  train_options opts;
  plan topology;
  std::map<caf::actor_addr, job_actor> actors;
  std::set<std::string> nodes;
  nlohmann::json progress = nlohmann::json::object();
  nlohmann::json last_actors = nlohmann::json::array(); ///< of the previous job, for /status
  std::string last_error;
  std::string last_result;
};

struct supervisor_state {
  supervisor_config cfg;
  std::shared_ptr<spdlog::logger> log = runtime::logger("supervisor");
  std::map<std::string, node_entry> nodes; ///< joined (and maybe ready) nodes
  runtime::challenge_book challenges;
  caf::actor local_agent; ///< single-process mode
  job_state job;
  std::uint64_t next_job_id = 1;
  int jobs_finished = 0;
  int jobs_failed = 0;
  bool stopping = false;
  static inline const char* name = "supervisor";
};

using supervisor_actor = caf::stateful_actor<supervisor_state>;

dataset load_split(const std::string& dir, bool train) {
  auto split = runtime::load_mnist(dir, train);
  return {train ? "mnist/train" : "mnist/test", std::move(split.images), std::move(split.labels)};
}

/// The part of a language model's text held out for evaluation: its last 10%.
constexpr double text_heldout_fraction = 0.1;

/// A language model's data: the text file `file` cut into the training part
/// and the held-out tail, each as non-overlapping windows of the model's
/// context with next-byte targets.
std::pair<dataset, dataset> load_text(const std::string& file, const train_options& opts,
                                      const models::model_spec& model) {
  if (std::filesystem::is_directory(file))
    throw runtime::input_error("--model " + opts.model +
                               " reads a text file (--data FILE, e.g. "
                               "data/sherlock.txt), but '" +
                               file + "' is a directory");
  auto text = runtime::text_dataset::load(file, model.input_shape.at(0), text_heldout_fraction);
  const auto vocab = models::output_shape(model).back();
  if (text.vocab_size() > vocab)
    throw runtime::input_error("--data " + file + ": the text has " +
                               std::to_string(text.vocab_size()) + " distinct bytes, more than " +
                               "the " + std::to_string(vocab) + " of model " + opts.model +
                               "'s vocabulary");
  auto name = std::filesystem::path(file).filename().string();
  return {text_windows(text, runtime::text_split::train, name + "/train"),
          text_windows(text, runtime::text_split::heldout, name + "/heldout")};
}

caf::error refuse(const std::string& why) {
  return caf::make_error(caf::sec::invalid_argument, why);
}

int ready_nodes(const supervisor_state& st) {
  int n = 0;
  for (const auto& [name, e] : st.nodes)
    n += e.ready ? 1 : 0;
  return n;
}

void stop_supervisor(supervisor_actor* self, const std::string& why);

/// Ends the job's actors (and asks every node involved to drop whatever it
/// spawned for the job), then forgets the job.
nlohmann::json actors_json(const supervisor_state& st);

void teardown(supervisor_actor* self) {
  auto& st = self->state;
  if (!st.job.actors.empty())
    st.job.last_actors = actors_json(st);
  for (auto& [addr, a] : st.job.actors) {
    self->demonitor(a.handle);
    self->send_exit(a.handle, caf::exit_reason::user_shutdown);
  }
  for (const auto& node : st.job.nodes) {
    if (node == "local" && st.local_agent)
      self->send(st.local_agent, teardown_atom::value, st.job.id);
    else if (auto it = st.nodes.find(node); it != st.nodes.end() && it->second.agent)
      self->send(it->second.agent, teardown_atom::value, st.job.id);
  }
  if (st.cfg.courier)
    st.cfg.courier->end_job(st.job.id);
  st.job.actors.clear();
  st.job.nodes.clear();
  if (st.job.client) {
    self->demonitor(st.job.client);
    st.job.client = nullptr;
  }
  st.job.phase = "idle";
}

void job_finished(supervisor_actor* self) {
  auto& st = self->state;
  ++st.jobs_finished;
  if (st.cfg.max_jobs > 0 && st.jobs_finished >= st.cfg.max_jobs)
    stop_supervisor(self, "finished " + std::to_string(st.jobs_finished) + " job(s)");
}

/// Fails the running job with `why` (which names the actor or node). The one
/// place failures end up: recovery would start here.
void abort_job(supervisor_actor* self, const std::string& why,
               caf::sec code = caf::sec::runtime_error) {
  auto& st = self->state;
  if (st.job.phase == "idle")
    return;
  st.log->error("job {} aborted: {}", st.job.id, why);
  st.job.last_error = why;
  ++st.jobs_failed;
  auto reply = st.job.reply;
  teardown(self);
  reply.deliver(caf::make_error(code, why));
  job_finished(self);
}

caf::actor track(supervisor_actor* self, caf::actor a, std::string label, std::string kind,
                 std::string node) {
  self->monitor(a);
  self->state.job.actors.emplace(a.address(),
                                 job_actor{std::move(label), std::move(kind), std::move(node), a});
  return a;
}

/// The devices jobs can be placed on.
std::vector<device_slot> cluster_devices(const supervisor_state& st) {
  std::vector<device_slot> r;
  for (const auto& [name, e] : st.nodes) {
    if (!e.ready)
      continue;
    for (std::size_t i = 0; i < e.info.devices.size(); ++i) {
      const auto& d = e.info.devices[i];
      r.push_back(
          {d.name, name, d.where, d.threads, i < e.info.gflops.size() ? e.info.gflops[i] : 0.0});
    }
  }
  return r;
}

caf::actor agent_of(supervisor_actor* self, const std::string& node) {
  auto& st = self->state;
  if (node == "local")
    return st.local_agent;
  auto it = st.nodes.find(node);
  return it == st.nodes.end() ? caf::actor{} : it->second.agent;
}

/// The actors a job's nodes spawned for it, indexed as the plan's slots:
/// devices as plan::devices, shards and tp_ranks as plan::stages, dp_ranks
/// (all-reduce between replicas) at (stage * tp + tp rank) * replicas +
/// replica, ps as plan::ps_shards.
struct job_actors {
  std::vector<caf::actor> devices, shards, dp_ranks, tp_ranks, ps;
  std::size_t left = 0; ///< spawn replies still missing
};

/// The last phase: wiring, loaders and the trainer, all answered locally.
void start_trainer(supervisor_actor* self, const job_actors& spawned, dataset train_set,
                   dataset test_set, std::optional<runtime::checkpoint> resume) {
  const auto& topology = self->state.job.topology;
  const auto depth = static_cast<std::size_t>(topology.depth());
  const auto replicas = static_cast<std::size_t>(topology.replicas);
  const auto tp = static_cast<std::size_t>(topology.tp);
  const auto& devices = spawned.devices;
  const auto& shards = spawned.shards;
  const auto& ranks = spawned.dp_ranks;
  const auto& tp_ranks = spawned.tp_ranks;
  const auto& ps = spawned.ps;
  auto left = std::make_shared<std::size_t>(shards.size() + 2 * ranks.size() + 2 * tp_ranks.size() +
                                            (ps.empty() ? 0 : shards.size()));
  auto id = self->state.job.id;
  auto go = [self, id, shards, ps, train_set, test_set, resume]() mutable {
    auto& st = self->state;
    if (st.job.id != id || st.job.phase != "starting")
      return;
    const auto& topology = st.job.topology;
    const auto& opts = st.job.opts;
    auto sys = &self->system();
    loader_config lc;
    lc.sample_shape = topology.model.input_shape;
    lc.parts = topology.microbatches;
    lc.seed = opts.seed;
    lc.batch = opts.batch;
    lc.data = train_set;
    lc.shares = topology.batch_shares;
    trainer_config tc;
    // One loader per replica, each preparing only its replica's samples.
    for (int r = 0; r < topology.replicas; ++r) {
      lc.replica = r;
      auto label = topology.replicas == 1
                       ? std::string{"data_loader (train)"}
                       : "data_loader (train, replica " + std::to_string(r) + ")";
      tc.train_loaders.push_back(
          track(self, spawn_data_loader(*sys, lc), label, "data_loader", st.cfg.name));
    }
    caf::actor test_loader;
    if (opts.evaluate) {
      lc.replica = 0;
      lc.shares = {1.0};
      lc.data = test_set;
      lc.shuffle = false;
      lc.batch = std::min<std::int64_t>(1000, test_set.size());
      tc.test_batch = lc.batch;
      test_loader = track(self, spawn_data_loader(*sys, lc), "data_loader (test)", "data_loader",
                          st.cfg.name);
    }
    tc.opts = opts;
    tc.topology = topology;
    tc.stages = shards;
    tc.ps_shards = ps;
    tc.test_loader = test_loader;
    tc.train_samples = train_set.size();
    tc.test_samples = test_set.size();
    tc.resume = std::move(resume);
    tc.report_to = caf::actor_cast<caf::actor>(self);
    tc.courier = st.cfg.courier ? st.cfg.courier->for_job(st.job.id) : nullptr;
    track(self, spawn_trainer(*sys, std::move(tc)), "trainer", "trainer", st.cfg.name);
    st.job.phase = "running";
  };
  // With virtual stages the pipeline wraps round: the last stage's chunk v
  // feeds stage 0's chunk v + 1, so the ends are each other's neighbours.
  const bool ring = topology.virtual_stages > 1;
  const auto n = depth;
  auto one_done = [left, go]() mutable {
    if (--*left == 0)
      go();
  };
  auto failed = [self, id](std::string what) {
    return [self, id, what](caf::error& err) {
      if (self->state.job.id == id)
        abort_job(self, what + ": " + runtime::describe(self->system(), err));
    };
  };
  auto who = [&](std::size_t r, std::size_t k, std::size_t t) {
    std::string w = "stage " + std::to_string(k);
    if (replicas > 1)
      w += " of replica " + std::to_string(r);
    if (tp > 1)
      w += ", tensor-parallel rank " + std::to_string(t);
    return w;
  };
  // Rank t of stage k talks to rank t of stages k - 1 and k + 1 (tensor-
  // parallel ranks hold identical activations at stage boundaries).
  for (std::size_t j = 0; j < shards.size(); ++j) {
    const auto& s = topology.stages[j];
    const auto k = static_cast<std::size_t>(s.stage);
    auto at = [&](std::size_t stage) {
      return shards[topology.slot_index(s.replica, static_cast<int>(stage), s.tp_rank)];
    };
    self->request(shards[j], std::chrono::seconds(30), runtime::wire_atom::value, devices[s.device],
                  k > 0 || ring ? at((k + n - 1) % n) : caf::actor{},
                  k + 1 < n || ring ? at((k + 1) % n) : caf::actor{})
        .then([one_done](bool) mutable { one_done(); },
              failed("wiring " + who(static_cast<std::size_t>(s.replica), k,
                                     static_cast<std::size_t>(s.tp_rank))));
  }
  // Data parallelism: rank t of stage k of every replica forms a collective
  // group; each shard learns its rank.
  for (std::size_t g = 0; g < depth * tp && !ranks.empty(); ++g) {
    const auto k = g / tp, t = g % tp;
    std::vector<caf::actor> group(ranks.begin() + static_cast<std::ptrdiff_t>(g * replicas),
                                  ranks.begin() + static_cast<std::ptrdiff_t>((g + 1) * replicas));
    for (std::size_t r = 0; r < replicas; ++r) {
      auto what = "wiring the all-reduce group of " + who(r, k, t);
      self->request(group[r], std::chrono::seconds(30), runtime::wire_atom::value, group)
          .then([one_done]() mutable { one_done(); }, failed(what));
      self->request(shards[topology.slot_index(static_cast<int>(r), static_cast<int>(k),
                                               static_cast<int>(t))],
                    std::chrono::seconds(30), runtime::dp_group_atom::value, group[r])
          .then([one_done](bool) mutable { one_done(); }, failed(what));
    }
  }
  // Tensor parallelism: the tp shards of one stage of one replica form a
  // collective group their split layers all-reduce through.
  for (std::size_t g = 0; g < replicas * depth && !tp_ranks.empty(); ++g) {
    std::vector<caf::actor> group(tp_ranks.begin() + static_cast<std::ptrdiff_t>(g * tp),
                                  tp_ranks.begin() + static_cast<std::ptrdiff_t>((g + 1) * tp));
    for (std::size_t t = 0; t < tp; ++t) {
      auto what = "wiring the tensor-parallel group of " + who(g / depth, g % depth, t);
      self->request(group[t], std::chrono::seconds(30), runtime::wire_atom::value, group)
          .then([one_done]() mutable { one_done(); }, failed(what));
      self->request(shards[g * tp + t], std::chrono::seconds(30), runtime::tp_group_atom::value,
                    group[t])
          .then([one_done](bool) mutable { one_done(); }, failed(what));
    }
  }
  // Parameter servers: every worker shard learns all ps shards.
  for (std::size_t j = 0; j < shards.size() && !ps.empty(); ++j) {
    const auto& s = topology.stages[j];
    self->request(shards[j], std::chrono::seconds(30), runtime::ps_group_atom::value, ps)
        .then([one_done](bool) mutable { one_done(); },
              failed("giving the parameter servers to " +
                     who(static_cast<std::size_t>(s.replica), static_cast<std::size_t>(s.stage),
                         static_cast<std::size_t>(s.tp_rank))));
  }
}

/// --trace FILE is written when the run ends: prove now that it can be (its
/// directory exists or can be made, and is writable), so a job never trains
/// for hours and then fails to write its timeline.
void check_trace_file(const std::string& file) {
  std::filesystem::path p{file};
  if (std::filesystem::is_directory(p))
    throw runtime::input_error("--trace " + file + ": is a directory, not a file");
  try {
    runtime::ensure_writable_directory(p.has_parent_path() ? p.parent_path()
                                                           : std::filesystem::path{"."});
  } catch (const runtime::input_error& e) {
    throw runtime::input_error("--trace " + file + ": " + e.what());
  }
}

/// Plans and validates a job, then has the nodes spawn its actors. Returns
/// an error message for bad input; the rest of the start is asynchronous.
std::string launch(supervisor_actor* self) {
  auto& st = self->state;
  auto& job = st.job;
  dataset train_set, test_set;
  std::optional<runtime::checkpoint> resume;
  try {
    job.opts = train_options_from_json(nlohmann::json::parse(job.options_json));
    auto available =
        st.cfg.local_node
            ? local_devices(job.opts, std::max(1u, std::thread::hardware_concurrency()))
            : cluster_devices(st);
    if (!job.opts.plan.is_null()) {
      // A saved plan (--plan FILE): its topology, on this cluster's devices.
      job.topology = place_saved_plan(plan_from_json(job.opts.plan), available);
      adopt_plan_degrees(job.opts, job.topology);
    } else {
      job.topology = make_plan(job.opts, available);
    }
    const auto& model = job.topology.model;
    if (models::is_sequence_model(model)) {
      // A language model (the transformer) reads a text file.
      std::tie(train_set, test_set) = load_text(job.opts.data_dir, job.opts, model);
    } else {
      train_set = load_split(job.opts.data_dir, true);
      if (job.opts.evaluate)
        test_set = load_split(job.opts.data_dir, false);
      // Any other model is fed MNIST images; one that wants other input is
      // refused here rather than failing in the loader.
      auto per_sample = train_set.samples.numel() / std::max<std::int64_t>(1, train_set.size());
      if (model.input_dtype != runtime::dtype::f32 ||
          runtime::shape_numel(model.input_shape) != per_sample)
        throw runtime::input_error("--model " + job.opts.model + " takes " +
                                   std::string{runtime::to_string(model.input_dtype)} + " input " +
                                   runtime::to_string(model.input_shape) + ", not the " +
                                   std::to_string(per_sample) + " pixels of an MNIST image");
    }
    const auto steps = total_training_steps(job.opts, train_set.size());
    if (job.opts.warmup_steps > 0 && job.opts.warmup_steps >= steps)
      throw runtime::input_error("--warmup-steps " + std::to_string(job.opts.warmup_steps) +
                                 " must be fewer than the run's " + std::to_string(steps) +
                                 " training steps");
    if (!job.opts.resume_dir.empty()) {
      resume = runtime::read_checkpoint(job.opts.resume_dir);
      check_resume_compatible(*resume, job.opts, job.topology, train_set.size());
    }
    if (!job.opts.checkpoint_dir.empty())
      runtime::ensure_writable_directory(job.opts.checkpoint_dir);
    if (!job.opts.trace_file.empty())
      check_trace_file(job.opts.trace_file);
  } catch (const nlohmann::json::exception& e) {
    return std::string{"job options: "} + e.what();
  } catch (const std::exception& e) {
    return e.what();
  }
  const auto& topology = job.topology;
  st.log->info("job {}: {} on {} stage(s) x {} replica(s), {} micro-batch(es)", job.id,
               topology.strategy(), topology.depth(), topology.replicas, topology.microbatches);
  // Shown with progress output; benchmarks running many jobs keep it quiet.
  st.log->log(job.opts.progress ? spdlog::level::info : spdlog::level::debug,
              "plan ({} partition):\n{}", topology.partition,
              describe(topology, memory_assumptions::of(job.opts)));
  job.phase = "starting";
  // Ask the nodes for the devices and shards, all at once.
  auto acc = std::make_shared<job_actors>();
  const bool use_ps = !topology.ps_shards.empty();
  acc->devices.resize(topology.devices.size());
  acc->shards.resize(topology.stages.size());
  if (topology.replicas > 1 && !use_ps)
    acc->dp_ranks.resize(topology.stages.size());
  if (topology.tp > 1)
    acc->tp_ranks.resize(topology.stages.size());
  acc->ps.resize(topology.ps_shards.size());
  acc->left = topology.devices.size() + topology.stages.size() + acc->dp_ranks.size() +
              acc->tp_ranks.size() + acc->ps.size();
  auto id = job.id;
  auto done = [self, acc, id, train_set, test_set, resume]() {
    if (--acc->left == 0 && self->state.job.id == id)
      start_trainer(self, *acc, train_set, test_set, resume);
  };
  auto on_error = [self, id](std::string what) {
    return [self, id, what](caf::error& err) {
      if (self->state.job.id == id)
        abort_job(self, what + ": " + runtime::describe(self->system(), err));
    };
  };
  // One spawn request to a node's agent; the reply fills `slot` (owned by acc).
  auto spawn_on = [&](const std::string& node, const std::string& kind,
                      const nlohmann::json& config, const std::string& label, caf::actor* slot) {
    job.nodes.insert(node);
    self->request(agent_of(self, node), std::chrono::seconds(30), spawn_atom::value, id, kind,
                  config.dump())
        .then(
            [self, acc, slot, label, kind, node, done](caf::actor& a) mutable {
              if (self->state.job.phase != "starting")
                return;
              *slot = track(self, a, label, kind, node);
              done();
            },
            on_error("spawning " + label));
  };
  for (std::size_t i = 0; i < topology.devices.size(); ++i) {
    const auto& d = topology.devices[i];
    spawn_on(d.node, "device", to_json(device_config{d.name, d.where, d.threads}),
             "device " + d.node + "/" + d.name, &acc->devices[i]);
  }
  const auto fault = parse_fault(job.opts.fault);
  const int tp = topology.tp;
  for (std::size_t j = 0; j < topology.stages.size(); ++j) {
    const auto& s = topology.stages[j];
    const auto& d = topology.devices[s.device];
    shard_config c;
    c.stage = s.stage;
    c.stages = topology.depth();
    c.replica = s.replica;
    c.replicas = topology.replicas;
    c.tp_rank = s.tp_rank;
    c.tp = tp;
    c.bucket_bytes = job.opts.bucket_bytes;
    c.check_replicas = job.opts.check_replicas;
    c.model = topology.model;
    c.chunks = s.chunks;
    c.optimizer = job.opts.optimizer_config();
    c.seed = job.opts.seed;
    c.schedule = topology.schedule;
    c.trace = !job.opts.trace_file.empty();
    if (fault.stage == s.stage && fault.replica == s.replica && s.tp_rank == 0)
      (fault.kind == fault_kind::perturb ? c.perturb_step : c.fault_step) = fault.step;
    if (job.opts.slow_stage == s.stage &&
        (job.opts.slow_replica < 0 || job.opts.slow_replica == s.replica))
      c.slow_factor = job.opts.slow_factor;
    c.clip_norm = job.opts.clip_norm;
    if (use_ps) {
      c.ps_layout = topology.ps_layout;
      c.ps = topology.ps_mode;
    }
    std::string who = "stage " + std::to_string(s.stage);
    if (topology.replicas > 1)
      who = "replica " + std::to_string(s.replica) + " " + who;
    if (tp > 1)
      who += " tp rank " + std::to_string(s.tp_rank);
    spawn_on(d.node, "layer_shard", to_json(c),
             "layer_shard " + who + " on " + d.node + "/" + d.name, &acc->shards[j]);
    if (tp > 1) {
      // Rank t of the stage's tensor-parallel group, in the shard's process.
      collective_config g;
      g.rank = s.tp_rank;
      g.size = tp;
      g.algo = collectives::parse_allreduce_algo(job.opts.allreduce);
      g.tree_threshold_bytes = static_cast<std::size_t>(job.opts.tree_threshold_bytes);
      spawn_on(d.node, "collective", to_json(g),
               "tensor-parallel rank of " + who + " on " + d.node + "/" + d.name,
               &acc->tp_ranks[j]);
    }
    if (!acc->dp_ranks.empty()) {
      // Stage k of replica r is rank r of stage k's group, in the shard's
      // process: NCCL ranks when every replica of the stage is on a GPU (and
      // this build has NCCL), collective rank actors otherwise.
      std::vector<runtime::device> group_devices;
      for (int r = 0; r < topology.replicas; ++r)
        group_devices.push_back(
            topology.devices[topology.slot(r, s.stage, s.tp_rank).device].where);
      const auto backend = choose_collective_backend(
          group_devices, group_devices.front().is_cuda() && nccl_available());
      collective_config g;
      g.rank = s.replica;
      g.size = topology.replicas;
      g.algo = collectives::parse_allreduce_algo(job.opts.allreduce);
      g.tree_threshold_bytes = static_cast<std::size_t>(job.opts.tree_threshold_bytes);
      auto config = to_json(g);
      if (backend == collective_backend::nccl)
        config["device"] = runtime::to_string(d.where);
      spawn_on(d.node, backend == collective_backend::nccl ? "nccl" : "collective", config,
               "collective rank " + std::to_string(s.replica) + " of " + who + " on " + d.node +
                   "/" + d.name,
               &acc->dp_ranks[static_cast<std::size_t>(
                   (s.stage * tp + s.tp_rank) * topology.replicas + s.replica)]);
    }
  }
  for (std::size_t i = 0; i < topology.ps_shards.size(); ++i) {
    const auto& slot = topology.ps_shards[i];
    const auto& d = topology.devices[slot.device];
    ps_shard_config c;
    c.shard = slot.shard;
    c.assignment = topology.ps_layout;
    c.workers = topology.replicas;
    c.mode = topology.ps_mode;
    c.staleness = topology.staleness;
    if (resume) // the workers' first push is of the step the checkpoint stopped at
      c.first_step = resume->trainer_state.value("global_step", std::int64_t{0});
    c.optimizer = job.opts.optimizer_config();
    c.model = topology.model;
    c.seed = job.opts.seed;
    if (fault.ps == slot.shard)
      c.fault_step = fault.step;
    c.trace = !job.opts.trace_file.empty();
    spawn_on(d.node, "ps_shard", to_json(c),
             "ps_shard " + std::to_string(slot.shard) + " on " + d.node + "/" + d.name,
             &acc->ps[i]);
  }
  return {};
}

/// Starts the waiting job once enough nodes are ready.
void maybe_start(supervisor_actor* self) {
  auto& st = self->state;
  if (st.job.phase != "waiting")
    return;
  if (!st.cfg.local_node && ready_nodes(st) < st.cfg.expect_nodes)
    return;
  auto err = launch(self);
  if (!err.empty()) {
    st.job.last_error = err;
    auto reply = st.job.reply;
    teardown(self);
    reply.deliver(refuse(err));
    ++st.jobs_failed;
    job_finished(self);
  }
}

/// A node is gone (its agent died, or it stopped answering pings).
/// `name` by value: callers pass the key of the entry this erases.
void node_lost(supervisor_actor* self, std::string name, const std::string& why) {
  auto& st = self->state;
  auto it = st.nodes.find(name);
  if (it == st.nodes.end())
    return;
  auto agent = it->second.agent;
  st.nodes.erase(it);
  st.log->error("node {} lost: {}", name, why);
  if (agent) {
    // A node that comes back (SIGCONT, a healed network) reads why it was
    // dropped in its exit reason and stops its job actors.
    self->demonitor(agent);
    self->send_exit(agent,
                    caf::make_error(caf::sec::runtime_error, "dropped by the supervisor: " + why));
  }
  if (st.job.nodes.count(name))
    abort_job(self, "node " + name + " lost: " + why);
}

void ping_nodes(supervisor_actor* self) {
  auto& st = self->state;
  for (auto& [name, e] : st.nodes) {
    if (!e.ready || e.ping_outstanding)
      continue;
    e.ping_outstanding = true;
    self->request(e.agent, st.cfg.ping_timeout, ping_atom::value)
        .then(
            [self, name = name](std::string& text) {
              auto it = self->state.nodes.find(name);
              if (it == self->state.nodes.end())
                return;
              it->second.ping_outstanding = false;
              it->second.last_seen = clock_type::now();
              try {
                it->second.last_ping = nlohmann::json::parse(text);
              } catch (const nlohmann::json::exception&) {
              }
            },
            [self, name = name](caf::error& err) {
              auto timeout = self->state.cfg.ping_timeout.count();
              node_lost(self, name,
                        err == caf::sec::request_timeout
                            ? "no heartbeat reply within " + std::to_string(timeout) + " ms"
                            : runtime::describe(self->system(), err));
            });
  }
}

void stop_supervisor(supervisor_actor* self, const std::string& why) {
  auto& st = self->state;
  if (st.stopping)
    return;
  st.stopping = true;
  st.log->info("stopping: {}", why);
  abort_job(self, "the supervisor is stopping: " + why);
  for (auto& [name, e] : st.nodes)
    if (e.agent) {
      self->demonitor(e.agent);
      self->send(e.agent, stop_atom::value);
    }
  if (st.local_agent)
    self->send_exit(st.local_agent, caf::exit_reason::user_shutdown);
  self->quit();
}

nlohmann::json actors_json(const supervisor_state& st) {
  nlohmann::json actors = nlohmann::json::array();
  for (const auto& [addr, a] : st.job.actors) {
    long pid = static_cast<long>(::getpid());
    if (auto it = st.nodes.find(a.node); it != st.nodes.end())
      pid = it->second.info.pid;
    actors.push_back({{"label", a.label},
                      {"kind", a.kind},
                      {"node", a.node},
                      {"pid", pid},
                      {"id", a.handle.id()}});
  }
  return actors;
}

nlohmann::json status_json(supervisor_actor* self) {
  auto& st = self->state;
  nlohmann::json nodes = nlohmann::json::array();
  auto now = clock_type::now();
  for (const auto& [name, e] : st.nodes) {
    auto j = to_json(e.info);
    j["ready"] = e.ready;
    j["data_plane"] = {{"host", e.data_host}, {"port", e.data_port}};
    j["last_heartbeat_ms"] =
        std::chrono::duration_cast<std::chrono::milliseconds>(now - e.last_seen).count();
    j["transport"] = e.last_ping;
    nodes.push_back(j);
  }
  auto self_transport =
      st.cfg.courier ? transport_status(*st.cfg.courier) : nlohmann::json::object();
  return {{"supervisor",
           {{"name", st.cfg.name},
            {"pid", static_cast<long>(::getpid())},
            {"mode", st.cfg.local_node ? "single-process" : "cluster"},
            {"expect_nodes", st.cfg.expect_nodes},
            {"transport", self_transport}}},
          {"nodes", nodes},
          {"job",
           {{"id", st.job.id},
            {"phase", st.job.phase},
            {"actors", actors_json(st)},
            {"previous_actors", st.job.last_actors},
            {"progress", st.job.progress},
            {"last_error", st.job.last_error}}},
          {"jobs_finished", st.jobs_finished},
          {"jobs_failed", st.jobs_failed}};
}

std::string metrics_text(supervisor_actor* self) {
  using mt = runtime::prometheus_builder::metric_type;
  auto& st = self->state;
  runtime::prometheus_builder b;
  b.family("troupe_nodes", mt::gauge, "Nodes that joined and are ready")
      .sample({}, ready_nodes(st));
  b.family("troupe_jobs_finished_total", mt::counter, "Jobs ended (done or failed)")
      .sample({}, st.jobs_finished);
  b.family("troupe_jobs_failed_total", mt::counter, "Jobs that failed").sample({}, st.jobs_failed);
  b.family("troupe_job_running", mt::gauge, "1 while a job runs")
      .sample({}, st.job.phase == "running" ? 1 : 0);
  const auto& p = st.job.progress;
  b.family("troupe_job_step", mt::gauge, "Training steps done by the running job")
      .sample({}, p.value("step", 0.0));
  b.family("troupe_job_step_seconds", mt::gauge, "Duration of the last training step")
      .sample({}, p.value("step_seconds", 0.0));
  b.family("troupe_job_samples_per_second", mt::gauge, "Samples per second of the last step")
      .sample({}, p.value("samples_per_second", 0.0));
  // Per actor: what each stage sent to its peers.
  std::vector<std::pair<std::vector<runtime::prometheus_builder::label>, nlohmann::json>> stages;
  auto current = actors_json(st);
  if (p.contains("stages"))
    for (const auto& s : p.at("stages")) {
      const auto stage = "stage " + std::to_string(s.value("stage", 0));
      std::string label =
          "layer_shard " + (st.job.topology.replicas > 1
                                ? "replica " + std::to_string(s.value("replica", 0)) + " " + stage
                                : stage);
      if (st.job.topology.tp > 1) // as launch() labels the shards
        label += " tp rank " + std::to_string(s.value("tp_rank", 0));
      std::string node;
      for (const auto* list : {&st.job.last_actors, &current})
        for (const auto& a : *list)
          if (a.value("label", "").rfind(label + " ", 0) == 0)
            node = a.value("node", "");
      stages.push_back({{{"actor", label}, {"node", node}}, s});
    }
  b.family("troupe_actor_messages_sent_total", mt::counter,
           "Activations and gradients an actor sent to its peers");
  for (const auto& [labels, s] : stages)
    b.sample(labels, s.value("messages_sent", 0.0));
  b.family("troupe_actor_bytes_sent_total", mt::counter, "Tensor bytes an actor sent to its peers");
  for (const auto& [labels, s] : stages)
    b.sample(labels, s.value("bytes_sent", 0.0));
  b.family("troupe_actor_compute_seconds_total", mt::counter, "Device time of an actor's kernels");
  for (const auto& [labels, s] : stages)
    b.sample(labels, s.value("compute_seconds", 0.0));
  b.family("troupe_actor_allreduce_bytes_total", mt::counter,
           "Gradient bytes an actor handed to all-reduces (data parallelism)");
  for (const auto& [labels, s] : stages)
    b.sample(labels, s.value("allreduce_bytes", 0.0));
  b.family("troupe_actor_allreduce_seconds_total", mt::counter,
           "Time from an actor's first gradient bucket launched to its last one reduced, summed "
           "over steps");
  for (const auto& [labels, s] : stages)
    b.sample(labels, s.value("allreduce_seconds", 0.0));
  b.family("troupe_actor_ps_bytes_total", mt::counter,
           "Gradient bytes an actor pushed to and parameter bytes it pulled from the parameter "
           "servers");
  for (const auto& [labels, s] : stages)
    b.sample(labels, s.value("ps_bytes", 0.0));
  // Per process and transport: how tensor messages left it.
  std::vector<std::pair<std::string, nlohmann::json>> processes;
  processes.emplace_back(st.cfg.name, st.cfg.courier ? transport_status(*st.cfg.courier)
                                                     : nlohmann::json::object());
  for (const auto& [name, e] : st.nodes)
    processes.emplace_back(name, e.last_ping);
  b.family("troupe_transport_messages_total", mt::counter,
           "Tensor messages a process sent, by transport (caf inline or dataplane)");
  for (const auto& [node, t] : processes)
    for (const char* transport : {"caf", "dataplane"})
      if (t.contains(transport))
        b.sample({{"node", node}, {"transport", transport}}, t[transport].value("messages", 0.0));
  b.family("troupe_transport_bytes_total", mt::counter,
           "Tensor payload bytes a process sent, by transport");
  for (const auto& [node, t] : processes)
    for (const char* transport : {"caf", "dataplane"})
      if (t.contains(transport))
        b.sample({{"node", node}, {"transport", transport}}, t[transport].value("bytes", 0.0));
  b.family("troupe_dataplane_peer_bytes_sent_total", mt::counter,
           "Bytes written to a data-plane peer, frame headers included");
  for (const auto& [node, t] : processes)
    if (t.contains("dataplane_peers"))
      for (const auto& [peer, c] : t["dataplane_peers"].items())
        b.sample({{"node", node}, {"peer", peer}}, c.value("bytes_sent", 0.0));
  b.family("troupe_dataplane_peer_bytes_received_total", mt::counter,
           "Bytes read from a data-plane peer, frame headers included");
  for (const auto& [node, t] : processes)
    if (t.contains("dataplane_peers"))
      for (const auto& [peer, c] : t["dataplane_peers"].items())
        b.sample({{"node", node}, {"peer", peer}}, c.value("bytes_received", 0.0));
  return b.take();
}

/// Wires a newly ready node's data plane to the supervisor's and to every
/// other ready node's; `done` runs when all connections are up or one failed.
void connect_mesh(supervisor_actor* self, const std::string& name,
                  std::function<void(std::optional<std::string>)> done) {
  auto& st = self->state;
  auto& n = st.nodes.at(name);
  struct pending {
    std::size_t left = 1; // released after every request went out
    std::optional<std::string> error;
    std::function<void(std::optional<std::string>)> done;
  };
  auto acc = std::make_shared<pending>();
  acc->done = std::move(done);
  auto one = [acc](std::optional<std::string> err) {
    if (err && !acc->error)
      acc->error = err;
    if (--acc->left == 0)
      acc->done(acc->error);
  };
  auto ask = [self, acc, one](const caf::actor& agent, const std::string& peer,
                              const std::string& host, std::uint16_t port,
                              const caf::actor& endpoint) {
    ++acc->left;
    self->request(agent, std::chrono::seconds(10), peer_atom::value, peer, host, port, endpoint)
        .then([one](bool) { one(std::nullopt); },
              [self, one](caf::error& err) { one(runtime::describe(self->system(), err)); });
  };
  if (st.cfg.courier) {
    ++acc->left;
    // The courier runs `done` on its io thread: hop back into the actor.
    auto me = caf::actor_cast<caf::actor>(self);
    st.cfg.courier->add_peer(name, n.data_host, n.data_port, n.courier,
                             [one, me](std::optional<std::string> err) {
                               caf::anon_send(me, deferred{[one, err] { one(err); }});
                             });
    ask(n.agent, st.cfg.courier->name(), st.cfg.data_host, st.cfg.courier->port(),
        st.cfg.courier->endpoint());
  }
  // Every node that has announced itself, ready or still connecting: two
  // nodes announcing at once must still meet (exactly once, here).
  for (auto& [other, e] : st.nodes) {
    if (other == name || !e.agent)
      continue;
    ask(n.agent, other, e.data_host, e.data_port, e.courier);
    ask(e.agent, name, n.data_host, n.data_port, n.courier);
  }
  one(std::nullopt);
}

caf::behavior supervisor(supervisor_actor* self, supervisor_config cfg) {
  auto& st = self->state;
  st.cfg = std::move(cfg);
  st.log = runtime::logger("supervisor");
  // One line at start on what compute this process can use.
  auto gpus = kernels::probe_gpus();
  if (gpus.usable_devices == 0)
    st.log->info("no usable GPU ({}): running on CPU devices", gpus.reason);
  else
    st.log->info("{} usable CUDA device(s); this version places layer shards on CPU "
                 "devices only",
                 gpus.usable_devices);
  if (st.cfg.local_node) {
    node_agent_config ac;
    ac.name = "local";
    st.local_agent = spawn_node_agent(self->system(), std::move(ac));
    self->link_to(st.local_agent);
  } else {
    self->delayed_send(self, st.cfg.ping_interval, tick_atom::value);
  }
  self->set_down_handler([self](caf::down_msg& dm) {
    auto& st = self->state;
    for (auto& [name, e] : st.nodes)
      if (e.agent && e.agent.address() == dm.source) {
        node_lost(self, name, runtime::describe(self->system(), dm.reason));
        return;
      }
    if (st.job.client && dm.source == st.job.client.address()) {
      abort_job(self, "the client that submitted job " + std::to_string(st.job.id) + " went away");
      return;
    }
    auto it = st.job.actors.find(dm.source);
    if (it == st.job.actors.end())
      return;
    // A job actor that ends normally before the job does is still a failure
    // unless it is the trainer, whose normal exit follows its job_done.
    if ((!dm.reason || dm.reason == caf::exit_reason::normal) && it->second.kind == "trainer")
      return;
    std::string why = dm.reason ? runtime::describe(self->system(), dm.reason) : "exited early";
    abort_job(self, it->second.label + " failed: " + why);
  });
  return {
      [self](runtime::run_atom,
             std::string& options_json) -> caf::result<std::string, runtime::named_tensors> {
        auto& st = self->state;
        if (st.job.phase != "idle")
          return refuse("supervisor: a job is already running");
        if (st.stopping)
          return refuse("supervisor: stopping");
        auto& job = st.job;
        job.id = st.next_job_id++;
        // Before make_response_promise(), which takes the sender out of the
        // current message.
        job.client = caf::actor_cast<caf::actor>(self->current_sender());
        if (job.client)
          self->monitor(job.client);
        job.reply = self->make_response_promise();
        job.options_json = std::move(options_json);
        job.last_error.clear();
        job.progress = nlohmann::json::object();
        job.phase = "waiting";
        auto reply = job.reply;
        if (!st.cfg.local_node && ready_nodes(st) < st.cfg.expect_nodes) {
          st.log->info("job {} waits for {} node(s) ({} ready)", job.id, st.cfg.expect_nodes,
                       ready_nodes(st));
          self->delayed_send(self, st.cfg.join_wait, join_timeout_atom::value, job.id);
        }
        // Once a promise exists, the answer must go through it.
        maybe_start(self);
        return reply;
      },
      [self](join_timeout_atom, std::uint64_t id) {
        auto& st = self->state;
        if (st.job.id != id || st.job.phase != "waiting")
          return;
        abort_job(self,
                  "only " + std::to_string(ready_nodes(st)) + " of " +
                      std::to_string(st.cfg.expect_nodes) + " node(s) joined within " +
                      std::to_string(st.cfg.join_wait.count() / 1000) + " s",
                  caf::sec::invalid_argument);
      },
      [self](job_done_atom, std::string& report, runtime::named_tensors& params) {
        auto& st = self->state;
        if (st.job.phase != "running")
          return;
        st.log->info("job {} done", st.job.id);
        try {
          // Where it ran: for the submitting client (the trainer does not know).
          auto r = nlohmann::json::parse(report);
          r["placement"] = describe(st.job.topology);
          nlohmann::json pids = nlohmann::json::object();
          for (const auto& node : st.job.nodes)
            if (auto it = st.nodes.find(node); it != st.nodes.end())
              pids[node] = it->second.info.pid;
          r["node_pids"] = pids;
          report = r.dump();
        } catch (const nlohmann::json::exception&) {
        }
        auto reply = st.job.reply;
        teardown(self);
        reply.deliver(std::move(report), std::move(params));
        job_finished(self);
      },
      [self](progress_atom, std::string& text) {
        try {
          self->state.job.progress = nlohmann::json::parse(text);
        } catch (const nlohmann::json::exception&) {
        }
      },
      // --- join protocol ---
      [self](hello_atom, std::uint32_t version, std::uint64_t types_hash,
             std::string& name) -> caf::result<std::string> {
        auto& st = self->state;
        if (st.cfg.local_node)
          return refuse("this supervisor runs a single-process job and takes no nodes");
        if (version != runtime::protocol_version)
          return refuse("node " + name + " speaks protocol version " + std::to_string(version) +
                        ", this supervisor " + std::to_string(runtime::protocol_version) +
                        ": run the same troupe build everywhere");
        if (types_hash != runtime::message_types_hash())
          return refuse("node " + name + " registers different message types (hash " +
                        std::to_string(types_hash) + ", supervisor " +
                        std::to_string(runtime::message_types_hash()) +
                        "): run the same troupe build everywhere");
        nlohmann::json c{{"nonce", st.challenges.issue()}, {"supervisor", st.cfg.name}};
        return c.dump();
      },
      [self](join_atom, std::string& text) -> caf::result<std::string> {
        auto& st = self->state;
        if (st.cfg.local_node)
          return refuse("this supervisor runs a single-process job and takes no nodes");
        node_description d;
        try {
          auto j = nlohmann::json::parse(text);
          d = node_description_from_json(j);
          auto nonce = j.at("nonce").get<std::string>();
          if (!st.challenges.consume(nonce))
            return refuse("node " + d.name +
                          ": join with an unknown, expired or already used "
                          "challenge (replayed handshake?)");
          if (!st.cfg.ca.empty())
            runtime::verify_node_identity(st.cfg.ca, j.at("certificate").get<std::string>(), d.name,
                                          runtime::join_proof_message(nonce, d.name, st.cfg.name),
                                          j.at("signature").get<std::string>());
        } catch (const nlohmann::json::exception& e) {
          return refuse(std::string{"join: "} + e.what());
        } catch (const std::exception& e) {
          return refuse(std::string{"join: "} + e.what());
        }
        if (!runtime::valid_node_name(d.name) || d.name == st.cfg.name || d.name == "local")
          return refuse("join: '" + d.name + "' is not a usable node name");
        if (!st.cfg.allowed_names.empty() &&
            std::find(st.cfg.allowed_names.begin(), st.cfg.allowed_names.end(), d.name) ==
                st.cfg.allowed_names.end())
          return refuse("join: node '" + d.name + "' is not in the cluster spec");
        if (st.nodes.count(d.name))
          return refuse("join: a node named '" + d.name + "' has already joined");
        st.log->info("node {} joined: pid {} on {}, {} device(s)", d.name, d.pid, d.host,
                     d.devices.size());
        node_entry e;
        e.info = d;
        st.nodes.emplace(d.name, std::move(e));
        nlohmann::json w{{"key", runtime::transport::key_to_hex(st.cfg.key)},
                         {"data",
                          {{"name", st.cfg.courier ? st.cfg.courier->name() : st.cfg.name},
                           {"host", st.cfg.data_host},
                           {"port", st.cfg.courier ? st.cfg.courier->port() : 0}}}};
        return w.dump();
      },
      [self](ready_atom, std::string& name, caf::actor& agent, std::string& host,
             std::uint16_t port, caf::actor& endpoint) -> caf::result<bool> {
        auto& st = self->state;
        auto it = st.nodes.find(name);
        if (it == st.nodes.end() || it->second.ready || it->second.agent)
          return refuse("ready: node '" + name + "' has not joined (or is ready already)");
        auto& e = it->second;
        e.agent = agent;
        e.courier = endpoint;
        e.data_host = host;
        e.data_port = port;
        self->monitor(agent);
        auto rp = self->make_response_promise<bool>();
        connect_mesh(self, name, [self, rp, name](std::optional<std::string> err) mutable {
          auto& st = self->state;
          auto it = st.nodes.find(name);
          if (it == st.nodes.end()) {
            rp.deliver(refuse("ready: node '" + name + "' was lost while connecting"));
            return;
          }
          if (err) {
            rp.deliver(caf::make_error(caf::sec::runtime_error,
                                       "data plane of node " + name + ": " + *err));
            node_lost(self, name, "data plane: " + *err);
            return;
          }
          it->second.ready = true;
          it->second.last_seen = clock_type::now();
          st.log->info("node {} ready ({} of {} expected)", name, ready_nodes(st),
                       st.cfg.expect_nodes);
          rp.deliver(true);
          maybe_start(self);
        });
        return rp;
      },
      [](deferred& d) { d.run(); },
      [](bool) {}, // a node's teardown acknowledgement
      [self](tick_atom) {
        ping_nodes(self);
        self->delayed_send(self, self->state.cfg.ping_interval, tick_atom::value);
      },
      [self](status_atom) { return status_json(self).dump(); },
      [self](metrics_atom) { return metrics_text(self); },
      [self](stop_atom) { stop_supervisor(self, "told to stop"); },
  };
}

} // namespace

caf::actor spawn_supervisor(caf::actor_system& sys, supervisor_config cfg) {
  return sys.spawn(supervisor, std::move(cfg));
}

} // namespace troupe::actors
