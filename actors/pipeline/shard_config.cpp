#include "actors/pipeline/shard_config.hpp"

#include <stdexcept>
#include <string>

#include "runtime/error.hpp"

namespace troupe::actors {

nlohmann::json to_json(const shard_config& c) {
  nlohmann::json chunks = nlohmann::json::array();
  for (const auto& r : c.chunks)
    chunks.push_back({r.begin, r.end});
  return {{"stage", c.stage},
          {"stages", c.stages},
          {"model", c.model.to_json()},
          {"chunks", chunks},
          {"optimizer", c.optimizer},
          {"seed", c.seed},
          {"schedule", std::string{to_string(c.schedule)}},
          {"fault_step", c.fault_step},
          {"perturb_step", c.perturb_step},
          {"hang_step", c.hang_step},
          {"exit_step", c.exit_step},
          {"cut_step", c.cut_step},
          {"trace", c.trace},
          {"slow_factor", c.slow_factor},
          {"clip_norm", c.clip_norm},
          {"replica", c.replica},
          {"replicas", c.replicas},
          {"bucket_bytes", c.bucket_bytes},
          {"check_replicas", c.check_replicas},
          {"tp_rank", c.tp_rank},
          {"tp", c.tp},
          {"ps_layout", to_json(c.ps_layout)},
          {"ps_mode", std::string{to_string(c.ps)}}};
}

shard_config shard_config_from_json(const nlohmann::json& j) {
  try {
    shard_config c;
    c.stage = j.at("stage").get<int>();
    c.stages = j.at("stages").get<int>();
    c.model = models::model_spec::from_json(j.at("model"));
    for (const auto& r : j.at("chunks"))
      c.chunks.push_back({r.at(0).get<std::size_t>(), r.at(1).get<std::size_t>()});
    c.optimizer = j.at("optimizer");
    c.seed = j.at("seed").get<std::uint64_t>();
    c.schedule = parse_schedule_kind(j.at("schedule").get<std::string>());
    c.fault_step = j.at("fault_step").get<std::int64_t>();
    c.perturb_step = j.value("perturb_step", std::int64_t{-1});
    c.hang_step = j.value("hang_step", std::int64_t{-1});
    c.exit_step = j.value("exit_step", std::int64_t{-1});
    c.cut_step = j.value("cut_step", std::int64_t{-1});
    c.trace = j.value("trace", false); // optional: off unless asked for
    c.slow_factor = j.value("slow_factor", 1.0);
    if (!(c.slow_factor >= 1.0 && c.slow_factor <= 100.0))
      throw runtime::input_error("shard config: slow_factor " + std::to_string(c.slow_factor) +
                                 " outside [1, 100]");
    c.clip_norm = j.value("clip_norm", 0.0); // optional: off unless asked for
    if (!(c.clip_norm >= 0.0))
      throw runtime::input_error("shard config: clip_norm " + std::to_string(c.clip_norm) +
                                 " is negative");
    c.replica = j.value("replica", 0);
    c.replicas = j.value("replicas", 1);
    c.bucket_bytes = j.value("bucket_bytes", c.bucket_bytes);
    c.check_replicas = j.value("check_replicas", std::int64_t{0});
    if (c.replicas < 1 || c.replicas > 1024 || c.replica < 0 || c.replica >= c.replicas)
      throw runtime::input_error("shard config: replica " + std::to_string(c.replica) + " of " +
                                 std::to_string(c.replicas));
    c.tp_rank = j.value("tp_rank", 0);
    c.tp = j.value("tp", 1);
    if (c.tp < 1 || c.tp > 64 || c.tp_rank < 0 || c.tp_rank >= c.tp)
      throw runtime::input_error("shard config: tensor-parallel rank " + std::to_string(c.tp_rank) +
                                 " of " + std::to_string(c.tp));
    if (j.contains("ps_layout"))
      c.ps_layout = ps_assignment_from_json(j.at("ps_layout"));
    c.ps = parse_ps_mode(j.value("ps_mode", std::string{"sync"}));
    if (c.bucket_bytes < 0 || c.check_replicas < 0)
      throw runtime::input_error("shard config: negative bucket_bytes or check_replicas");
    if (c.stages < 1 || c.stage < 0 || c.stage >= c.stages)
      throw runtime::input_error("shard config: stage " + std::to_string(c.stage) + " of " +
                                 std::to_string(c.stages));
    if (c.chunks.empty() || c.chunks.size() > 64)
      throw runtime::input_error("shard config: " + std::to_string(c.chunks.size()) +
                                 " layer chunks (1 to 64 allowed)");
    for (const auto& r : c.chunks)
      if (r.begin >= r.end || r.end > c.model.layers.size())
        throw runtime::input_error("shard config: layer range [" + std::to_string(r.begin) + ", " +
                                   std::to_string(r.end) + ") outside the model");
    return c;
  } catch (const nlohmann::json::exception& e) {
    throw runtime::input_error(std::string{"shard config: "} + e.what());
  } catch (const std::invalid_argument& e) {
    throw runtime::input_error(std::string{"shard config: "} + e.what());
  }
}

} // namespace troupe::actors
