#include "runtime/net/system_config.hpp"

#include <stdexcept>
#include <thread>

#include <caf/config_option_adder.hpp>

#include "runtime/net/tensor_codec.hpp"

namespace troupe::runtime {

system_config::system_config(unsigned scheduler_threads)
    : tensor_messages_(std::make_shared<transport::tensor_message_registry>()) {
  opt_group{custom_options_, "troupe"}.add<std::uint64_t>(
      "max-tensor-bytes", "largest tensor payload accepted from a peer (bytes)");
  set("troupe.max-tensor-bytes", default_max_tensor_bytes);
  if (scheduler_threads == 0)
    scheduler_threads = std::max(1u, std::thread::hardware_concurrency());
  set("scheduler.max-threads", static_cast<size_t>(scheduler_threads));
  // The work-stealing policy's idle workers poll with sleeps of up to 10 ms,
  // which adds milliseconds to every hop of a training step. The sharing
  // policy wakes a worker through a condition variable as soon as a message
  // is enqueued, and burns no CPU while idle (the cores belong to devices).
  set("scheduler.policy", caf::atom("sharing"));
  // Keep the default logger quiet; troupe logs through spdlog.
  set("logger.verbosity", caf::atom("quiet"));
  set("logger.console", caf::atom("none"));
}

std::shared_ptr<const transport::tensor_message_registry>
tensor_messages(const caf::actor_system& sys) {
  const auto* cfg = dynamic_cast<const system_config*>(&sys.config());
  if (!cfg)
    throw std::invalid_argument(
        "this actor system was not configured by troupe's system_config: no tensor messages");
  return cfg->tensor_messages();
}

} // namespace troupe::runtime
