#pragma once

// --balance auto's measurements: before a job's first generation the
// supervisor asks every ready node to run the job's own layers on each of its
// devices (forward + backward on a micro-batch, over several CPU-quota
// periods, models::measure_layer_speed). The node runs the probe on a thread
// of its own, so its agent keeps answering heartbeats; the supervisor only
// waits for the replies. A node that answers late, not at all, or with
// unusable numbers leaves the job on equal shares with a warning naming it
// (actors/plan/balance.hpp, measurement_problems).
//
//   supervisor -> node agent  (probe_atom, request JSON, link sink) -> result JSON
//     request {"model": model spec, "microbatch": m, "seed": s, "min_seconds": t,
//              "devices": [{"name", "threads"}], "gemm": "auto" | "openblas" | "onednn",
//              "fault": "" | "zero" | "absurd" | "hang"}
//     result  {"devices": [{"name", "gemm": the library it ran, "layer_seconds": [...],
//                           "seconds": wall}],
//              "link_bytes_per_second": the node's data plane to the sink (link_probe.hpp)}

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <caf/atom.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/result.hpp>
#include <caf/typed_response_promise.hpp>
#include <nlohmann/json.hpp>

#include "actors/cluster/supervisor_state.hpp"

namespace troupe::runtime::transport {
class courier;
}

namespace troupe::actors {

using probe_atom = caf::atom_constant<caf::atom("probe")>;

/// The node side: runs `request` on a detached actor of its own (the link
/// too, through `courier`, when `sink` and `courier` are there), which
/// answers the requester. An injected "hang" keeps the promise (in `hung`)
/// and never answers.
caf::result<std::string> answer_probe(caf::event_based_actor* agent, const std::string& request,
                                      const caf::actor& sink,
                                      std::shared_ptr<runtime::transport::courier> courier,
                                      std::vector<caf::typed_response_promise<std::string>>& hung);

/// The supervisor side: measures the job on every ready node (all nodes at
/// once, each node's devices one after another), keeps the results in
/// job.speeds, then calls `done`. Nodes that fail or time out are warned
/// about and left unmeasured.
void measure_job(supervisor_actor* self, std::function<void()> done);

/// Plans the job again on the measured devices (job.topology). Unusable
/// measurements are warned about, naming the node, and dropped: the plan
/// then has equal shares and the --partition split.
void replan_measured(supervisor_state& st);

/// `devices` with the job's measurements (job.speeds) filled in.
std::vector<device_slot> with_speeds(const job_state& job, std::vector<device_slot> devices);

} // namespace troupe::actors
