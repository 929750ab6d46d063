#include "apps/troupe/local_train.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>

#include <unistd.h>

#include <caf/actor_system.hpp>

#include "actors/protocol/system_config.hpp"
#include "apps/troupe/commands.hpp"
#include "apps/troupe/shutdown_signal.hpp"

namespace troupe::apps {

actors::job_result run_local(const actors::train_options& o) {
  shutdown_signal signals; // before the actor system: its threads inherit the mask
  auto stop = std::make_shared<std::atomic<bool>>(false);
  signals.watch([stop](int) {
    stop->store(true);
    // A second signal means "now": no checkpoint, no report.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGUSR2); // shutdown_signal's wake-up at destruction
    int sig = 0;
    if (sigwait(&set, &sig) == 0 && sig != SIGUSR2)
      std::_Exit(exit_interrupted);
  });
  actors::system_config cfg;
  caf::actor_system sys{cfg};
  return actors::run_training(sys, o, stop);
}

std::optional<int> report_early_end(const actors::train_options& o, const nlohmann::json& r) {
  const auto steps = r.value("steps", std::int64_t{0});
  if (r.value("interrupted", false)) {
    if (o.progress && isatty(2))
      std::fputc('\n', stderr); // the progress bar's line is unfinished
    if (o.checkpoint_dir.empty())
      std::printf("interrupted at step %lld: no checkpoint (pass --checkpoint DIR to keep "
                  "progress)\n",
                  static_cast<long long>(steps));
    else
      std::printf("interrupted at step %lld: checkpoint written to %s\n",
                  static_cast<long long>(steps), o.checkpoint_dir.c_str());
    return exit_interrupted;
  }
  if (o.resume_dir.empty() || r.value("steps_this_run", std::int64_t{-1}) != 0)
    return std::nullopt;
  const auto per_epoch = std::max<std::int64_t>(1, r.value("steps_per_epoch", std::int64_t{1}));
  const auto epochs = steps / per_epoch;
  std::printf("checkpoint %s already finished ", o.resume_dir.c_str());
  if (steps % per_epoch == 0)
    std::printf("%lld epoch%s (step %lld)", static_cast<long long>(epochs), epochs == 1 ? "" : "s",
                static_cast<long long>(steps));
  else
    std::printf("step %lld (%lld of epoch %lld)", static_cast<long long>(steps),
                static_cast<long long>(steps % per_epoch), static_cast<long long>(epochs + 1));
  std::printf(": nothing to do; raise --epochs or --steps to train further\n");
  return exit_ok;
}

} // namespace troupe::apps
