#include "actors/supervisor.hpp"

#include <map>
#include <thread>

#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>

#include "actors/data_loader.hpp"
#include "actors/device_actor.hpp"
#include "actors/layer_shard.hpp"
#include "actors/plan.hpp"
#include "actors/trainer.hpp"
#include "kernels/gpu.hpp"
#include "runtime/caf_error.hpp"
#include "runtime/error.hpp"
#include "runtime/file_util.hpp"
#include "runtime/idx.hpp"
#include "runtime/log.hpp"
#include "runtime/messages.hpp"

namespace troupe::actors {

namespace {

struct supervisor_state {
  std::shared_ptr<spdlog::logger> log = runtime::logger("supervisor");
  caf::response_promise reply;
  bool running = false;
  std::map<caf::actor_addr, std::string> labels; ///< the job's actors
  std::vector<caf::actor> actors;
  static inline const char* name = "supervisor";
};

using supervisor_actor = caf::stateful_actor<supervisor_state>;

dataset load_split(const std::string& dir, bool train) {
  auto split = runtime::load_mnist(dir, train);
  return {train ? "mnist/train" : "mnist/test", std::move(split.images), std::move(split.labels)};
}

void teardown(supervisor_actor* self) {
  auto& st = self->state;
  for (auto& a : st.actors) {
    self->demonitor(a);
    self->send_exit(a, caf::exit_reason::user_shutdown);
  }
  st.actors.clear();
  st.labels.clear();
  st.running = false;
}

caf::actor track(supervisor_actor* self, caf::actor a, std::string label) {
  self->monitor(a);
  self->state.labels.emplace(a.address(), std::move(label));
  self->state.actors.push_back(a);
  return a;
}

/// Plans and spawns a job; returns an error message, or empty on success.
std::string launch(supervisor_actor* self, const std::string& options_json) {
  auto& st = self->state;
  train_options opts;
  plan topology;
  dataset train_set, test_set;
  std::optional<runtime::checkpoint> resume;
  try {
    opts = train_options_from_json(nlohmann::json::parse(options_json));
    topology = make_plan(opts, std::max(1u, std::thread::hardware_concurrency()));
    train_set = load_split(opts.data_dir, true);
    if (opts.evaluate)
      test_set = load_split(opts.data_dir, false);
    // troupe train feeds MNIST images; a model that wants other input (the
    // text transformer) is refused here rather than failing in the loader.
    auto per_sample = train_set.samples.numel() / std::max<std::int64_t>(1, train_set.size());
    if (topology.model.input_dtype != runtime::dtype::f32 ||
        runtime::shape_numel(topology.model.input_shape) != per_sample)
      throw runtime::input_error("--model " + opts.model + " takes " +
                                 std::string{runtime::to_string(topology.model.input_dtype)} +
                                 " input " + runtime::to_string(topology.model.input_shape) +
                                 ", not the " + std::to_string(per_sample) +
                                 " pixels of an MNIST image");
    if (!opts.resume_dir.empty()) {
      resume = runtime::read_checkpoint(opts.resume_dir);
      check_resume_compatible(*resume, opts, topology, train_set.size());
    }
    if (!opts.checkpoint_dir.empty())
      runtime::ensure_writable_directory(opts.checkpoint_dir);
  } catch (const nlohmann::json::exception& e) {
    return std::string{"job options: "} + e.what();
  } catch (const std::exception& e) {
    return e.what();
  }
  st.log->info("job: {} on {} stage(s), {} micro-batch(es)", topology.strategy(),
               topology.stages.size(), topology.microbatches);
  for (const auto& line : {describe(topology)})
    st.log->debug("plan:\n{}", line);
  auto sys = &self->system();
  std::vector<caf::actor> devices;
  for (const auto& d : topology.devices)
    devices.push_back(track(self, spawn_device(*sys, {d.name, d.where, d.threads}),
                            "device " + d.node + "/" + d.name));
  std::vector<caf::actor> shards;
  for (const auto& s : topology.stages) {
    shard_config c;
    c.stage = s.stage;
    c.stages = static_cast<int>(topology.stages.size());
    c.model = topology.model;
    c.layer_begin = s.layers.begin;
    c.layer_end = s.layers.end;
    c.optimizer = opts.optimizer_config();
    c.seed = opts.seed;
    c.schedule = topology.schedule;
    if (auto f = parse_fault(opts.fault); f.stage == s.stage)
      c.fault_step = f.step;
    shards.push_back(track(self, spawn_layer_shard(*sys, std::move(c)),
                           "layer_shard stage " + std::to_string(s.stage) + " on " +
                             topology.devices[s.device].node + "/" +
                             topology.devices[s.device].name));
  }
  // Wire before the trainer exists, so every shard knows its peers before the
  // first step reaches it.
  for (std::size_t i = 0; i < shards.size(); ++i)
    self->send(shards[i], runtime::wire_atom::value, devices[topology.stages[i].device],
               i > 0 ? shards[i - 1] : caf::actor{},
               i + 1 < shards.size() ? shards[i + 1] : caf::actor{});
  loader_config lc;
  lc.sample_shape = topology.model.input_shape;
  lc.parts = topology.microbatches;
  lc.seed = opts.seed;
  lc.batch = opts.batch;
  lc.data = train_set;
  auto train_loader = track(self, spawn_data_loader(*sys, lc), "data_loader (train)");
  caf::actor test_loader;
  trainer_config tc;
  if (opts.evaluate) {
    lc.data = test_set;
    lc.shuffle = false;
    lc.batch = std::min<std::int64_t>(1000, test_set.size());
    tc.test_batch = lc.batch;
    test_loader = track(self, spawn_data_loader(*sys, lc), "data_loader (test)");
  }
  tc.opts = opts;
  tc.topology = topology;
  tc.stages = shards;
  tc.train_loader = train_loader;
  tc.test_loader = test_loader;
  tc.train_samples = train_set.size();
  tc.test_samples = test_set.size();
  tc.resume = std::move(resume);
  tc.report_to = caf::actor_cast<caf::actor>(self);
  track(self, spawn_trainer(*sys, std::move(tc)), "trainer");
  return {};
}

caf::behavior supervisor(supervisor_actor* self, std::string logger_name) {
  self->state.log = runtime::logger(logger_name);
  // One line at start on what compute this process can use.
  auto gpus = kernels::probe_gpus();
  if (gpus.usable_devices == 0)
    self->state.log->info("no usable GPU ({}): running on CPU devices", gpus.reason);
  else
    self->state.log->info("{} usable CUDA device(s); this version places layer shards on CPU "
                          "devices only", gpus.usable_devices);
  self->set_down_handler([self](caf::down_msg& dm) {
    auto& st = self->state;
    auto it = st.labels.find(dm.source);
    if (it == st.labels.end())
      return;
    if (!dm.reason || dm.reason == caf::exit_reason::normal) {
      // A job actor that ends normally before the job does is still a failure
      // unless it is the trainer, whose normal exit follows its job_done.
      if (it->second == "trainer")
        return;
    }
    std::string why = dm.reason ? runtime::describe(self->system(), dm.reason) : "exited early";
    std::string msg = it->second + " failed: " + why;
    st.log->error("job aborted: {}", msg);
    if (st.running)
      st.reply.deliver(caf::make_error(caf::sec::runtime_error, msg));
    teardown(self);
  });
  return {
    [self](runtime::run_atom, std::string& options_json) -> caf::result<std::string, runtime::named_tensors> {
      auto& st = self->state;
      if (st.running)
        return caf::make_error(caf::sec::runtime_error, "supervisor: a job is already running");
      st.reply = self->make_response_promise();
      st.running = true;
      auto err = launch(self, options_json);
      // Once a promise exists, the answer must go through it.
      auto reply = st.reply;
      if (!err.empty()) {
        teardown(self);
        reply.deliver(caf::make_error(caf::sec::invalid_argument, err));
      }
      return reply;
    },
    [self](job_done_atom, std::string& report, runtime::named_tensors& params) {
      auto& st = self->state;
      if (!st.running)
        return;
      st.reply.deliver(std::move(report), std::move(params));
      teardown(self);
    },
  };
}

} // namespace

caf::actor spawn_supervisor(caf::actor_system& sys) {
  // An argument-less function actor trips UBSan inside CAF 0.17
  // (init_fun_factory dereferences a null tuple pointer), so the logger name
  // is passed in.
  return sys.spawn(supervisor, std::string{"supervisor"});
}

} // namespace troupe::actors
