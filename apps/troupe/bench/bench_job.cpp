#include "apps/troupe/bench/bench_job.hpp"

#include <stdexcept>

namespace troupe::apps {

actors::train_options timed_job_options(std::int64_t warmup, std::int64_t steps) {
  actors::train_options o;
  o.max_steps = warmup + steps;
  o.timing_warmup = warmup;
  o.evaluate = false;
  o.progress = false;
  return o;
}

timed_figures timed_figures_of(const nlohmann::json& report, const std::string& none_message) {
  timed_figures t{report.at("timed_steps").get<double>(), report.at("timed_seconds").get<double>()};
  if (t.steps < 1 || t.seconds <= 0)
    throw std::runtime_error(none_message);
  return t;
}

} // namespace troupe::apps
