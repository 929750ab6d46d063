// `troupe plan`: the topology a training job with the same flags would run,
// planned on virtual devices and printed (or saved for `troupe train --plan`)
// without running anything or reading data.

#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "actors/cluster/recovery.hpp"
#include "actors/plan/plan.hpp"
#include "actors/plan/plan_memory.hpp"
#include "apps/troupe/cluster_net.hpp"
#include "apps/troupe/commands.hpp"
#include "apps/troupe/train_flags.hpp"
#include "runtime/error.hpp"
#include "runtime/io/file_util.hpp"
#include "runtime/net/cluster_spec.hpp"

namespace troupe::apps {

namespace {

struct plan_flags {
  training_flags train;
  int devices = 0;          ///< --devices N: N virtual CPU devices on node "local"
  std::string cluster_file; ///< --cluster-spec FILE
  bool json = false;
  std::string save;
};

/// The devices a cluster spec's nodes would offer, as `troupe node` with no
/// --devices offers them: every node that is not the chief (the supervisor),
/// named as `troupe node` names it, with one CPU device per CPU entry of its
/// "devices" (with that entry's cores as threads), or one single-thread CPU
/// device when the spec lists none.
std::vector<actors::device_slot> cluster_devices(const std::string& file) {
  auto text = runtime::read_file(file, 1 << 20);
  runtime::cluster_spec spec;
  try {
    spec = runtime::cluster_spec::parse(
        std::string_view{reinterpret_cast<const char*>(text.data()), text.size()});
  } catch (const runtime::input_error& e) {
    throw runtime::input_error("--cluster-spec " + file + ": " + e.what());
  }
  std::vector<actors::device_slot> r;
  for (const auto& n : spec.nodes()) {
    if (std::find(n.roles.begin(), n.roles.end(), "chief") != n.roles.end())
      continue;
    actors::device_slot d;
    d.node = node_name_from_spec(n.name);
    int count = 0;
    for (const auto& nd : n.devices)
      if (nd.kind == runtime::device_kind::cpu) {
        d.name = "cpu:" + std::to_string(count++);
        d.threads = std::max(1, nd.cores);
        r.push_back(d);
      }
    if (count == 0) {
      d.name = "cpu:0";
      r.push_back(d);
    }
  }
  if (r.empty())
    throw runtime::input_error("--cluster-spec " + file +
                               ": no node besides the chief offers devices");
  return r;
}

/// The devices to plan on: the cluster spec's, --devices N local ones, or as
/// many local ones as the job needs (what `troupe train` plans on).
std::vector<actors::device_slot> planning_devices(const plan_flags& f, unsigned cores) {
  if (!f.cluster_file.empty())
    return cluster_devices(f.cluster_file);
  if (f.devices > 0) {
    const auto& o = f.train.opts;
    const int threads = o.threads > 0 ? o.threads : static_cast<int>(cores);
    std::vector<actors::device_slot> r;
    for (int i = 0; i < f.devices; ++i) {
      actors::device_slot d;
      d.name = "cpu:" + std::to_string(i);
      d.threads = std::max(1, threads / f.devices);
      r.push_back(d);
    }
    return r;
  }
  return actors::local_devices(f.train.opts, cores);
}

int run_plan(plan_flags& f) {
  finish_training_flags(f.train);
  const auto& o = f.train.opts;
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  actors::plan p;
  if (!o.plan.is_null()) {
    // A saved plan: shown as it is, or checked against the given devices.
    p = actors::plan_from_json(o.plan);
    if (f.devices > 0 || !f.cluster_file.empty())
      p = actors::place_saved_plan(std::move(p), planning_devices(f, cores));
  } else {
    p = actors::make_plan(o, planning_devices(f, cores));
  }
  const auto assumptions = actors::memory_assumptions::of(o);
  const auto doc = actors::to_json(p, assumptions);
  if (!f.save.empty()) {
    const auto text = doc.dump(2) + "\n";
    runtime::write_file_atomically(f.save,
                                   {reinterpret_cast<const std::byte*>(text.data()), text.size()});
  }
  if (f.json) {
    std::printf("%s\n", doc.dump(2).c_str());
  } else {
    std::printf("model %s: %s, %zu layer shard%s (%d replica%s x %d stage%s x %d tp rank%s)",
                p.model.name.c_str(), p.strategy().c_str(), p.stages.size(),
                p.stages.size() == 1 ? "" : "s", p.replicas, p.replicas == 1 ? "" : "s", p.depth(),
                p.depth() == 1 ? "" : "s", p.tp, p.tp == 1 ? "" : "s");
    if (!p.ps_shards.empty())
      std::printf(" + %zu ps shard%s", p.ps_shards.size(), p.ps_shards.size() == 1 ? "" : "s");
    std::printf(", %d micro-batch%s per step, %s schedule, %s partition\n%s", p.microbatches,
                p.microbatches == 1 ? "" : "es", std::string{to_string(p.schedule)}.c_str(),
                p.partition.c_str(), actors::describe(p, assumptions).c_str());
    std::printf("%s\n", actors::recovery_summary(o).c_str());
    if (!f.save.empty())
      std::printf("saved to %s (run it with `troupe train --plan %s`)\n", f.save.c_str(),
                  f.save.c_str());
  }
  return exit_ok;
}

} // namespace

command_action add_plan_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "plan", "show the topology `troupe train` would run with the same flags (stage slots, "
              "collective groups, parameter servers, memory per device) without running "
              "anything; --save it for `troupe train --plan FILE`");
  auto f = std::make_shared<plan_flags>();
  add_training_flags(cmd, f->train);
  auto* devices =
      cmd->add_option("--devices", f->devices,
                      "plan on N virtual CPU devices on node 'local' (default: as many as the "
                      "job needs, as `troupe train` does)")
          ->check(CLI::Range(1, 4096));
  cmd->add_option("--cluster-spec", f->cluster_file,
                  "plan on the nodes of a cluster spec (TF_CONFIG shape or troupe's): every node "
                  "but the chief, one CPU device each unless the spec lists its devices")
      ->excludes(devices);
  cmd->add_flag("--json", f->json, "print the plan as JSON (what --save writes)");
  cmd->add_option("--save", f->save,
                  "write the plan as JSON to FILE (atomically), for `troupe train --plan FILE`");
  return [f] { return run_plan(*f); };
}

} // namespace troupe::apps
