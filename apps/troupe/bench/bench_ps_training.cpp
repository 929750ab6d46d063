// Parts 2 and 3 of `bench ps`: training samples/s of the ps modes with and
// without a slowed worker, and sync parameter servers against all-reduce.

#include "apps/troupe/bench/bench_ps_parts.hpp"

#include <algorithm>
#include <cstdio>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "actors/cluster/job.hpp"
#include "actors/plan/train_options.hpp"
#include "apps/troupe/bench/bench_job.hpp"
#include "apps/troupe/bench/bench_util.hpp"

namespace troupe::apps::ps_bench {

namespace {

/// One training configuration and its figures, one entry per repeat.
struct train_config {
  std::string label;
  int ps = 0; ///< 0: all-reduce
  std::string mode = "sync";
  int staleness = 0;
  bool slow = false;
  std::vector<double> sps, max_gap, loss, ps_mb_per_step;
  nlohmann::json runs = nlohmann::json::array();
};

void run_train(caf::actor_system& sys, const ps_flags& f, train_config& c) {
  auto o = timed_job_options(f.warmup, f.steps);
  o.model = "mlp";
  o.data_dir = f.data_dir;
  o.batch = f.batch;
  o.optimizer = "sgd";
  o.lr = f.lr;
  o.seed = 0;
  o.threads = f.threads;
  o.stages = 1;
  o.dp = f.workers;
  o.ps = c.ps;
  if (c.ps > 0) {
    o.ps_mode = actors::parse_ps_mode(c.mode);
    o.staleness = c.staleness;
  }
  if (c.slow) {
    o.slow_stage = 0;
    o.slow_replica = f.slow_replica;
    o.slow_factor = f.slow_factor;
  }
  auto r = actors::run_training(sys, o).report;
  const auto [steps, secs] = timed_figures_of(r, c.label + ": the job ran no timed steps");
  const double sps = static_cast<double>(f.batch) * steps / secs;
  const double loss = r.at("final_loss").get<double>();
  nlohmann::json run{{"samples_per_second", sps},
                     {"step_ms", 1e3 * secs / steps},
                     {"final_loss", loss},
                     {"steps", r.at("steps")}};
  c.sps.push_back(sps);
  c.loss.push_back(loss);
  if (c.ps > 0) {
    std::int64_t gap = 0;
    double bytes = 0;
    for (const auto& s : r.at("ps")) {
      gap = std::max(gap, s.at("max_gap").get<std::int64_t>());
      bytes += s.at("bytes_in").get<double>() + s.at("bytes_out").get<double>();
    }
    c.max_gap.push_back(static_cast<double>(gap));
    c.ps_mb_per_step.push_back(bytes / 1e6 / r.at("steps").get<double>());
    run["max_gap"] = gap;
    run["ps"] = r.at("ps");
  }
  c.runs.push_back(run);
}

/// The configurations every table needs (each run once per repeat) and
/// which of them each table shows.
struct training_plan {
  std::vector<train_config> cfgs;
  std::vector<std::size_t> fast_rows, slow_rows, cmp_rows; ///< indices into cfgs
  std::size_t sync_fast = 0, sync_slow = 0;                ///< the ratio base of each mode row

  /// The index of the configuration (added when new).
  std::size_t find(const ps_flags& f, int ps, const std::string& mode, bool slow) {
    const int k = mode == "ssp" ? f.staleness : 0;
    for (std::size_t i = 0; i < cfgs.size(); ++i)
      if (cfgs[i].ps == ps && (ps == 0 || (cfgs[i].mode == mode && cfgs[i].staleness == k)) &&
          cfgs[i].slow == slow)
        return i;
    auto& c = cfgs.emplace_back();
    c.ps = ps;
    c.mode = ps > 0 ? mode : "";
    c.staleness = k;
    c.slow = slow;
    c.label = ps == 0 ? "all-reduce dp" + std::to_string(f.workers)
                      : "ps" + std::to_string(ps) + " " + mode +
                            (mode == "ssp" ? " K=" + std::to_string(k) : "");
    if (slow)
      c.label += " slow";
    return cfgs.size() - 1;
  }
};

training_plan plan_training(const ps_flags& f, const std::vector<std::string>& parts) {
  const auto modes = parse_word_list("--modes", f.modes, {"sync", "async", "ssp"});
  const auto compare = parse_int_list("--compare-ps", f.compare_ps, 1, 256);
  training_plan t;
  if (has(parts, "modes")) {
    for (const auto& m : modes)
      t.fast_rows.push_back(t.find(f, f.ps, m, false));
    for (const auto& m : modes)
      t.slow_rows.push_back(t.find(f, f.ps, m, true));
  }
  if (has(parts, "allreduce")) {
    t.cmp_rows.push_back(t.find(f, 0, "sync", false));
    for (int s : compare)
      t.cmp_rows.push_back(t.find(f, s, "sync", false));
  }
  // The ratio base of each mode row: sync with the same shards and slowing.
  t.sync_fast = has(parts, "modes") ? t.find(f, f.ps, "sync", false) : 0;
  t.sync_slow = has(parts, "modes") ? t.find(f, f.ps, "sync", true) : 0;
  return t;
}

/// Every configuration once per repeat, the order rotated; prints samples/s.
void run_repeats(caf::actor_system& sys, const ps_flags& f, std::vector<train_config>& cfgs) {
  std::printf("\ntraining: zoo mlp on %s, global batch %lld over %d workers, sgd lr %g, %lld "
              "timed steps after %lld warm-up, %d repeat(s) interleaved; slow: worker %d's "
              "kernels x%g\n",
              f.data_dir.c_str(), static_cast<long long>(f.batch), f.workers,
              static_cast<double>(f.lr), static_cast<long long>(f.steps),
              static_cast<long long>(f.warmup), f.repeats, f.slow_replica, f.slow_factor);
  std::printf("%-8s", "repeat");
  for (const auto& c : cfgs)
    std::printf(" %18s", c.label.c_str());
  std::printf("   (samples/s)\n");
  std::fflush(stdout);
  for (int r = 0; r < f.repeats; ++r) {
    for (std::size_t k = 0; k < cfgs.size(); ++k)
      run_train(sys, f, cfgs[(k + static_cast<std::size_t>(r)) % cfgs.size()]);
    std::printf("%-8d", r + 1);
    for (const auto& c : cfgs)
      std::printf(" %18.0f", c.sps.back());
    std::printf("\n");
    std::fflush(stdout);
  }
}

const char* const table_header = "%-22s %20s %24s %12s %24s\n";

/// Prints configuration `i`'s row (its ratio to `base` when there is one);
/// returns it as JSON.
nlohmann::json table_row(const std::vector<train_config>& cfgs, std::size_t i,
                         std::optional<std::size_t> base, const char* base_name) {
  const auto& c = cfgs[i];
  auto s = summary::of(c.sps);
  char sps[48], rat[48] = "-", gap[64] = "-", loss[48];
  std::snprintf(sps, sizeof sps, "%.0f (%.0f-%.0f)", s.median, s.min, s.max);
  nlohmann::json j{{"label", c.label},
                   {"ps", c.ps},
                   {"ps_mode", c.ps > 0 ? nlohmann::json(c.mode) : nlohmann::json()},
                   {"staleness", c.staleness},
                   {"slow", c.slow},
                   {"samples_per_second", s.to_json()},
                   {"final_loss", summary::of(c.loss).to_json()},
                   {"runs", c.runs}};
  if (base) {
    auto q = paired_ratio::of(c.sps, cfgs[*base].sps);
    std::snprintf(rat, sizeof rat, "%.3f (%.3f-%.3f)", q.of_medians, q.per_repeat.min,
                  q.per_repeat.max);
    j[std::string{"ratio_to_"} + base_name] = {{"of_medians", q.of_medians},
                                               {"per_repeat", q.per_repeat.to_json()}};
  }
  if (c.ps > 0) {
    auto g = summary::of(c.max_gap);
    std::string each;
    for (double x : c.max_gap)
      each += (each.empty() ? "" : "/") + number(x);
    std::snprintf(gap, sizeof gap, "%s", each.c_str());
    j["max_gap"] = g.max;
    j["ps_mb_per_step"] = summary::of(c.ps_mb_per_step).median;
  }
  auto l = summary::of(c.loss);
  std::snprintf(loss, sizeof loss, "%.4f (%.4f-%.4f)", l.median, l.min, l.max);
  std::printf(table_header, c.label.c_str(), sps, rat, gap, loss);
  return j;
}

} // namespace

nlohmann::json bench_training(const ps_flags& f, caf::actor_system& sys,
                              const std::vector<std::string>& parts) {
  auto t = plan_training(f, parts);
  run_repeats(sys, f, t.cfgs);
  nlohmann::json out{{"model", "mlp"},
                     {"data", f.data_dir},
                     {"batch", f.batch},
                     {"workers", f.workers},
                     {"optimizer", "sgd"},
                     {"lr", f.lr},
                     {"steps", f.steps},
                     {"warmup", f.warmup},
                     {"threads", f.threads},
                     {"slow_stage", 0},
                     {"slow_replica", f.slow_replica},
                     {"slow_factor", f.slow_factor}};
  if (has(parts, "modes")) {
    nlohmann::json rows = nlohmann::json::array();
    std::printf("\n2. ps modes: %d workers, %d ps shard(s); ratio to sync with the same "
                "slowing, of the medians (per-repeat range)\n",
                f.workers, f.ps);
    std::printf(table_header, "config", "samples/s (min-max)", "ratio to sync", "max_gap/run",
                "train loss (min-max)");
    for (auto i : t.fast_rows)
      rows.push_back(table_row(t.cfgs, i, t.sync_fast, "sync"));
    for (auto i : t.slow_rows)
      rows.push_back(table_row(t.cfgs, i, t.sync_slow, "sync"));
    out["modes"] = {{"ps", f.ps}, {"staleness", f.staleness}, {"rows", rows}};
  }
  if (has(parts, "allreduce")) {
    nlohmann::json rows = nlohmann::json::array();
    std::printf("\n3. sync parameter servers vs all-reduce data parallelism, %d workers; ratio "
                "to all-reduce\n",
                f.workers);
    std::printf(table_header, "config", "samples/s (min-max)", "ratio to all-reduce", "max_gap/run",
                "train loss (min-max)");
    for (auto i : t.cmp_rows)
      rows.push_back(table_row(t.cfgs, i, t.cmp_rows.front(), "allreduce"));
    out["vs_allreduce"] = {{"rows", rows}};
  }
  std::printf("train loss: the report's final_loss, the mean training loss over the run's "
              "steps (same data order in every run; async and ssp apply one update per worker "
              "per step, sync one per step); max_gap/run: the largest staleness a ps shard saw "
              "serving a pull (steps ahead of the slowest worker), per run\n");
  return out;
}

} // namespace troupe::apps::ps_bench
