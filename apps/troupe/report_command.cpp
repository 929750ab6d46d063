// `troupe report RUN.json [--html out.html]`: a run's --report JSON as a
// plain summary, or as one self-contained page of plots (report_page.hpp).

#include <cstdio>
#include <memory>
#include <string>

#include "apps/troupe/commands.hpp"
#include "apps/troupe/report_page.hpp"
#include "runtime/io/file_util.hpp"

namespace troupe::apps {

command_action add_report_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "report", "a run's --report JSON: a short summary, or with --html one self-contained page "
                "(no network) plotting loss, accuracy or bits/char, learning rate, samples/s and "
                "per-stage busy time over steps, restarts and rebalances marked, beside the "
                "run's configuration and plan");
  auto run = std::make_shared<std::string>();
  auto html = std::make_shared<std::string>();
  cmd->add_option("RUN.json", *run, "the JSON file `troupe train --report FILE` wrote")->required();
  cmd->add_option("--html", *html, "write the page to this file (else print the summary)");
  return [run, html] {
    const auto report = load_run_report(*run);
    if (html->empty()) {
      std::fputs(report_summary(report).c_str(), stdout);
      return exit_ok;
    }
    runtime::write_file_atomically(*html, runtime::string_bytes(report_html(report, *run)));
    std::fprintf(stderr, "report page written to %s\n", html->c_str());
    return exit_ok;
  };
}

} // namespace troupe::apps
