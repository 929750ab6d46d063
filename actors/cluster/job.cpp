#include "actors/cluster/job.hpp"

#include <utility>

#include <caf/scoped_actor.hpp>

#include "actors/cluster/job_request.hpp"
#include "actors/cluster/supervisor.hpp"
#include "actors/protocol/messages.hpp"
#include "runtime/error.hpp"
#include "runtime/net/caf_error.hpp"

namespace troupe::actors {

namespace {

/// Runs `request` through a supervisor of its own in `sys`; the request
/// travels as it is (same process: no JSON).
job_result run_job(caf::actor_system& sys, job_request request) {
  const bool predict = request.opts.predict;
  auto sup = spawn_supervisor(sys);
  caf::scoped_actor self{sys};
  job_result result;
  std::optional<caf::error> failure;
  self->request(sup, caf::infinite, actors::run_atom::value, std::move(request))
      .receive(
          [&](std::string& report, runtime::named_tensors& params) {
            result.report = nlohmann::json::parse(report);
            for (std::size_t i = 0; i < params.names.size(); ++i)
              if (predict && params.names[i] == "predictions")
                result.predictions = params.tensors[i];
              else
                result.params.emplace_back(params.names[i], params.tensors[i]);
          },
          [&](caf::error& err) { failure = err; });
  self->send_exit(sup, caf::exit_reason::user_shutdown);
  if (failure) {
    auto msg = runtime::describe(sys, *failure);
    if (failure->code() == static_cast<std::uint8_t>(caf::sec::invalid_argument))
      throw runtime::input_error(msg);
    throw std::runtime_error(msg);
  }
  return result;
}

} // namespace

job_result run_training(caf::actor_system& sys, const train_options& opts) {
  opts.validate();
  return run_job(sys, job_request_from_options(opts));
}

job_result run_training(caf::actor_system& sys, const train_options& opts,
                        std::shared_ptr<const std::atomic<bool>> interrupt) {
  opts.validate();
  auto request = job_request_from_options(opts);
  request.interrupt = std::move(interrupt);
  return run_job(sys, std::move(request));
}

job_result run_training(caf::actor_system& sys, const train_options& opts, const plan& p) {
  // Checked here, so a bad plan fails with its own message (naming the field
  // as a saved plan's would) before a supervisor starts. The plan's JSON
  // reader is its validator; the job gets the plan itself.
  (void)plan_from_json(to_json(p));
  auto o = opts;
  o.model = p.model.name;
  o.plan = nullptr;
  adopt_plan_degrees(o, p);
  return run_job(sys, job_request{std::move(o), p, std::nullopt, std::nullopt, nullptr});
}

job_result run_training(caf::actor_system& sys, const train_options& opts, dataset train,
                        std::optional<dataset> test) {
  if (!train.source || train.size() == 0)
    throw runtime::input_error("run_training: the training data set " + train.name +
                               " has no samples");
  opts.validate();
  auto request = job_request_from_options(opts);
  request.train_data = std::move(train);
  request.test_data = std::move(test);
  return run_job(sys, std::move(request));
}

} // namespace troupe::actors
