#pragma once

// The parameter set `bench ps` pushes and pulls (a zoo model's or a synthetic
// one), its split over the shards and the shard configuration.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "actors/plan/ps_assignment.hpp"
#include "actors/ps/ps_shard.hpp"
#include "models/layers/model_spec.hpp"
#include "models/layers/parameter.hpp"
#include "runtime/net/transport/courier.hpp"

namespace troupe::apps::ps_bench {

/// The parameters pushed and pulled: a zoo model's, or (mb > 0) a synthetic
/// model of about `mb` MiB: dense 1024 -> H (the large tensor, split across
/// the shards), dense H -> 256, dense 256 -> 10.
models::model_spec parameter_model(const std::string& model, double mb);

/// One worker's copy of the model's parameters with a constant gradient.
std::vector<models::parameter> worker_parameters(const models::model_spec& spec);

/// Every parameter on stage 0, spread over `shards` shards.
actors::ps_assignment make_assignment(const models::model_spec& spec, int shards, double split_mb);

std::uint64_t model_bytes(const actors::ps_assignment& a);

/// A sync, plain-SGD shard (an update costs one pass over the parameters).
actors::ps_shard_config shard_config(const models::model_spec& spec, const actors::ps_assignment& a,
                                     int shard, int workers, float lr,
                                     std::shared_ptr<runtime::transport::courier> courier);

} // namespace troupe::apps::ps_bench
