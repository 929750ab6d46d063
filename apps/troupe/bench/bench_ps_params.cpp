#include "apps/troupe/bench/bench_ps_params.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "models/zoo.hpp"
#include "runtime/error.hpp"

namespace troupe::apps::ps_bench {

namespace rt = troupe::runtime;

models::model_spec parameter_model(const std::string& model, double mb) {
  if (mb <= 0) {
    try {
      return models::zoo_model(model);
    } catch (const std::invalid_argument& e) {
      throw rt::input_error(std::string{"--model: "} + e.what());
    }
  }
  const double elements = mb * 1048576.0 / 4.0;
  const auto h = std::max<std::int64_t>(1, std::llround(elements / (1024 + 1 + 256)));
  return models::model_builder("synthetic")
      .input({1024})
      .dense(1024, h)
      .relu()
      .dense(h, 256)
      .relu()
      .dense(256, 10)
      .build();
}

std::vector<models::parameter> worker_parameters(const models::model_spec& spec) {
  std::vector<models::parameter> out;
  for (auto& l : models::instantiate(spec, 0, spec.layers.size(), 0))
    for (auto& p : l->parameters()) {
      models::parameter q;
      q.name = p.name;
      q.value = p.value;
      q.grad = rt::tensor::empty(rt::dtype::f32, p.value.shape());
      std::fill_n(q.grad.mutable_data<float>(), q.grad.numel(), 1e-6f);
      q.grad_fresh = false;
      out.push_back(std::move(q));
    }
  return out;
}

actors::ps_assignment make_assignment(const models::model_spec& spec, int shards, double split_mb) {
  std::vector<actors::ps_param_info> params;
  for (const auto& p : worker_parameters(spec))
    params.push_back({p.name, 0, p.value.numel()});
  return actors::assign_parameters(params, shards, static_cast<std::int64_t>(split_mb * 1048576.0));
}

std::uint64_t model_bytes(const actors::ps_assignment& a) {
  std::uint64_t b = 0;
  for (const auto& p : a.params)
    b += static_cast<std::uint64_t>(p.numel) * sizeof(float);
  return b;
}

actors::ps_shard_config shard_config(const models::model_spec& spec, const actors::ps_assignment& a,
                                     int shard, int workers, float lr,
                                     std::shared_ptr<rt::transport::courier> courier) {
  actors::ps_shard_config c;
  c.shard = shard;
  c.assignment = a;
  c.workers = workers;
  c.mode = actors::ps_mode::sync;
  c.optimizer = {{"type", "sgd"}, {"lr", lr}, {"momentum", 0.0}, {"weight_decay", 0.0}};
  c.model = spec;
  c.courier = std::move(courier);
  return c;
}

} // namespace troupe::apps::ps_bench
