#include "actors/cluster/job_request.hpp"

#include <nlohmann/json.hpp>

#include "actors/plan/plan.hpp"

namespace troupe::actors {

job_request job_request_from_options(train_options opts) {
  job_request r{std::move(opts), std::nullopt, std::nullopt, std::nullopt, nullptr};
  if (!r.opts.plan.is_null()) {
    r.saved_plan = plan_from_json(r.opts.plan);
    r.opts.plan = nullptr; // from here on the typed plan is the one
  }
  return r;
}

job_request job_request_from_json(const std::string& text) {
  return job_request_from_options(train_options_from_json(nlohmann::json::parse(text)));
}

} // namespace troupe::actors
