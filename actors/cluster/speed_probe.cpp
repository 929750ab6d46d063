#include "actors/cluster/speed_probe.hpp"

#include <chrono>
#include <memory>
#include <utility>

#include <caf/actor_system.hpp>
#include <caf/spawn_options.hpp>
#include <fmt/format.h>

#include "actors/cluster/link_probe.hpp"
#include "kernels/cpu/gemm.hpp"
#include "kernels/cpu/gemm_backend.hpp"
#include "models/layer_costs.hpp"
#include "runtime/net/caf_error.hpp"
#include "runtime/net/transport/courier.hpp"

namespace troupe::actors {

namespace {

/// How long every device is measured: five 100 ms CPU-quota periods.
constexpr double probe_seconds_per_device = 0.5;

/// How long the link is measured, and with tensors of what size (an
/// activation or gradient bucket's order).
constexpr double link_probe_seconds = 0.3;
constexpr std::int64_t link_probe_bytes = std::int64_t{1} << 20;

/// Runs the probe on the calling thread (a detached actor's own): the
/// devices one after another, then the link to `sink` when there is one.
nlohmann::json run_probe(const nlohmann::json& req, caf::actor_system& sys,
                         const std::shared_ptr<runtime::transport::courier>& courier,
                         const caf::actor& sink) {
  const auto spec = models::model_spec::from_json(req.at("model"));
  const auto microbatch = req.at("microbatch").get<std::int64_t>();
  const auto seed = req.at("seed").get<std::uint64_t>();
  const auto min_seconds = req.at("min_seconds").get<double>();
  const auto fault = req.value("fault", std::string{});
  // The job's GEMM library, as its devices will run it (automatic resolves
  // with each device's threads below).
  kernels::cpu::set_gemm_backend_for_this_thread(
      kernels::cpu::parse_gemm_backend(req.value("gemm", std::string{"auto"})));
  nlohmann::json devices = nlohmann::json::array();
  for (const auto& d : req.at("devices")) {
    kernels::cpu::set_blas_threads_for_this_thread(d.at("threads").get<int>());
    const auto t0 = std::chrono::steady_clock::now();
    auto layers = models::measure_layer_speed(spec, microbatch, seed, min_seconds);
    if (fault == "zero")
      layers.assign(layers.size(), 0.0);
    else if (fault == "absurd")
      layers.assign(layers.size(), 1e9);
    devices.push_back(
        {{"name", d.at("name")},
         {"gemm", kernels::cpu::to_string(kernels::cpu::gemm_backend_for_this_thread())},
         {"layer_seconds", layers},
         {"seconds",
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()}});
  }
  nlohmann::json r{{"devices", devices}};
  if (courier && sink)
    r["link_bytes_per_second"] =
        measure_link(sys, *courier, sink, link_probe_bytes, link_probe_seconds);
  return r;
}

} // namespace

namespace {

/// Runs one probe on its own thread, then ends. A function with arguments,
/// not a capturing lambda: CAF 0.17 binds a null reference for the empty
/// argument tuple of the latter (UBSan reports it).
caf::behavior prober(caf::event_based_actor* self,
                     std::shared_ptr<runtime::transport::courier> courier, caf::actor sink) {
  return {[self, courier, sink](probe_atom, const std::string& r) -> caf::result<std::string> {
    self->quit();
    try {
      return run_probe(nlohmann::json::parse(r), self->system(), courier, sink).dump();
    } catch (const std::exception& e) {
      return caf::make_error(caf::sec::invalid_argument, std::string{"speed probe: "} + e.what());
    }
  }};
}

} // namespace

caf::result<std::string> answer_probe(caf::event_based_actor* agent, const std::string& request,
                                      const caf::actor& sink,
                                      std::shared_ptr<runtime::transport::courier> courier,
                                      std::vector<caf::typed_response_promise<std::string>>& hung) {
  nlohmann::json req;
  try {
    req = nlohmann::json::parse(request);
  } catch (const std::exception& e) {
    return caf::make_error(caf::sec::invalid_argument, std::string{"speed probe: "} + e.what());
  }
  if (req.value("fault", std::string{}) == "hang") { // never answers (tests)
    hung.push_back(agent->make_response_promise<std::string>());
    return hung.back();
  }
  auto probe = agent->spawn<caf::detached>(prober, std::move(courier), sink);
  auto rp = agent->make_response_promise<std::string>();
  agent->request(probe, caf::infinite, probe_atom::value, request)
      .then([rp](std::string& answer) mutable { rp.deliver(std::move(answer)); },
            [rp](caf::error& err) mutable { rp.deliver(std::move(err)); });
  return rp;
}

namespace {

/// The request for the devices of node `name`.
nlohmann::json probe_request(const job_state& job, const node_entry& node, const fault_spec& f,
                             const std::string& name) {
  const auto& o = job.opts;
  const auto microbatch =
      std::max<std::int64_t>(1, o.batch / (std::int64_t{o.dp} * std::max(1, o.microbatches)));
  nlohmann::json devices = nlohmann::json::array();
  for (const auto& d : node.info.devices)
    if (d.where.is_cpu())
      devices.push_back({{"name", d.name}, {"threads", d.threads}});
  return {{"model", job.topology.model.to_json()},
          {"microbatch", microbatch},
          {"seed", o.seed},
          {"min_seconds", probe_seconds_per_device},
          {"devices", devices},
          {"gemm", kernels::cpu::to_string(o.gemm)},
          {"fault", f.kind == fault_kind::probe && f.node == name ? f.probe : ""}};
}

/// Keeps node `name`'s answer in job.speeds.
void keep_speeds(supervisor_state& st, const std::string& name, const std::string& answer,
                 std::int64_t microbatch) {
  auto result = nlohmann::json::parse(answer);
  const double link = result.value("link_bytes_per_second", 0.0);
  for (const auto& d : result.at("devices"))
    st.job.speeds[name][d.at("name").get<std::string>()] = {
        d.at("layer_seconds").get<std::vector<double>>(), microbatch, link};
}

} // namespace

void measure_job(supervisor_actor* self, std::function<void()> done) {
  auto& st = self->state;
  auto& job = st.job;
  job.speeds.clear();
  const auto fault = parse_fault(job.opts.fault);
  struct pending {
    std::size_t left = 0;
    std::function<void()> done;
    clock_type::time_point started = clock_type::now();
    std::vector<caf::actor> sinks; ///< one per node's link probe (none in one process)
  };
  auto p = std::make_shared<pending>();
  p->done = std::move(done);
  const auto wire = job.wire();
  auto one_done = [self, p, wire] {
    if (--p->left > 0)
      return;
    for (const auto& sink : p->sinks)
      self->send_exit(sink, caf::exit_reason::user_shutdown);
    if (self->state.job.wire() != wire)
      return;
    self->state.job.probe_seconds = seconds_since(p->started);
    p->done();
  };
  std::vector<std::pair<std::string, nlohmann::json>> requests;
  for (const auto& [name, node] : st.nodes)
    if (node.ready && node.agent)
      requests.emplace_back(name, probe_request(job, node, fault, name));
  p->left = requests.size() + 1;
  for (auto& [name, req] : requests) {
    const auto n = req.at("devices").size();
    const auto timeout = std::chrono::milliseconds(
        static_cast<std::int64_t>(6000 + 3000 * probe_seconds_per_device * static_cast<double>(n)));
    const auto microbatch = req.at("microbatch").get<std::int64_t>();
    caf::actor sink;
    if (st.cfg.courier)
      p->sinks.push_back(sink = spawn_link_sink(self->system()));
    self->request(st.nodes.at(name).agent, timeout, probe_atom::value, req.dump(), sink)
        .then(
            [self, name, microbatch, one_done](const std::string& answer) {
              try {
                keep_speeds(self->state, name, answer, microbatch);
              } catch (const std::exception& e) {
                self->state.log->warn("node {}: speed probe answered nonsense ({}); it counts as "
                                      "unmeasured",
                                      name, e.what());
              }
              one_done();
            },
            [self, name, one_done](caf::error& err) {
              self->state.log->warn("node {}: speed probe failed ({}); it counts as unmeasured",
                                    name, runtime::describe(self->system(), err));
              one_done();
            });
  }
  one_done(); // the "+ 1": done at once when no node is ready
}

void replan_measured(supervisor_state& st) {
  auto& job = st.job;
  auto devices = job_devices(st, job.opts);
  const auto problems = measurement_problems(devices, job.topology.model.layers.size());
  for (const auto& why : problems)
    st.log->warn("job {}: --balance auto: {}; the job runs on equal shares and the --partition "
                 "split instead",
                 job.id, why);
  if (!problems.empty()) {
    job.speeds.clear();
    devices = job_devices(st, job.opts);
  }
  job.topology = make_plan(job.opts, devices);
  if (job.topology.balance == balance_mode::automatic)
    st.log->info("job {}: measured on the nodes in {:.2f} s; balanced plan predicts {:.2f} ms per "
                 "step",
                 job.id, job.probe_seconds, job.topology.predicted_step_seconds * 1e3);
}

std::vector<device_slot> with_speeds(const job_state& job, std::vector<device_slot> devices) {
  for (auto& d : devices) {
    auto node = job.speeds.find(d.node);
    if (node == job.speeds.end())
      continue;
    if (auto it = node->second.find(d.name); it != node->second.end()) {
      d.layer_seconds = it->second.layer_seconds;
      d.profile_microbatch = it->second.microbatch;
      d.link_bytes_per_second = it->second.link_bytes_per_second;
    }
  }
  return devices;
}

} // namespace troupe::actors
