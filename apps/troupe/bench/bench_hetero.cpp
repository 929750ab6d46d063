// `troupe bench hetero` (issue 15): on one machine, node a pinned to core 0
// and node b pinned to core 1 under a cgroup CPU quota (scripts/throttle), a
// 1-thread CPU device each, the supervisor sharing both cores; the zoo mlp on
// MNIST. Parts (--parts):
//   dp       for each speed ratio r (--ratios, b at 1/r of its core, from its
//            start): --dp 2 with equal shares (--balance off), --balance auto,
//            --batch-shares k,1 for k in 1.5 .. 4 (--balance off; the best is
//            "best hand"), and the ideal: a alone + b alone (dp-1 jobs, each
//            node on a cluster of its own);
//   midrun   b unthrottled, then at 1/3 of its core once the job has done a
//            third of its steps (/status progress); --balance off and auto,
//            with the report's balance.rebalances;
//   pp       --pp 2 --microbatches 8 over a and b at 1/2: --balance auto,
//            --balance off --partition flops, and every --split i,j;
//   peer     PyTorch DDP (bench/peers/ddp_mlp.py), ranks pinned like the
//            nodes, rank 1 throttled by the same script: equal split at each r.
// samples/s is the report's (the whole run: planning, measuring and
// rebalancing count). Exit 77 when scripts/throttle check fails here.

#include "apps/troupe/bench/bench_hetero.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <set>
#include <sstream>
#include <thread>

#include "apps/troupe/bench/bench_hetero_runs.hpp"
#include "apps/troupe/bench/bench_util.hpp"
#include "runtime/error.hpp"
#include "runtime/io/temp_dir.hpp"

namespace troupe::apps {

namespace {

namespace fs = std::filesystem;
using namespace hetero_bench;

constexpr int exit_skip = 77;
/// The mid-run slowdown takes b to 1/3 of its core; the pipeline's b is at 1/2.
constexpr double midrun_ratio = 3, pipeline_ratio = 2;
const std::vector<double> hand_trials{1.5, 2, 2.5, 3, 3.5, 4};
const std::vector<std::string> all_parts{"dp", "midrun", "pp", "peer"};

struct options {
  flags f;
  std::string parts = "all";
};

std::set<std::string> chosen_parts(const std::string& list) {
  std::set<std::string> out;
  std::stringstream in(list);
  for (std::string p; std::getline(in, p, ',');) {
    if (p == "all")
      out.insert(all_parts.begin(), all_parts.end());
    else if (std::find(all_parts.begin(), all_parts.end(), p) != all_parts.end())
      out.insert(p);
    else
      throw runtime::input_error("--parts: unknown '" + p + "' (all, dp, midrun, pp, peer)");
  }
  return out;
}

/// --throttle-script, else scripts/throttle in a folder above this
/// executable (build/bin/troupe -> the source tree), else ./scripts/throttle.
std::optional<fs::path> find_throttle(const flags& f) {
  std::error_code ec;
  if (!f.throttle_script.empty()) {
    if (!is_executable(f.throttle_script))
      throw runtime::input_error("--throttle-script: no executable '" + f.throttle_script + "'");
    return fs::absolute(f.throttle_script);
  }
  for (auto dir = self_exe().parent_path(); !dir.empty() && dir != dir.root_path();
       dir = dir.parent_path())
    if (is_executable(dir / "scripts" / "throttle"))
      return dir / "scripts" / "throttle";
  if (is_executable("scripts/throttle"))
    return fs::absolute("scripts/throttle");
  return std::nullopt;
}

std::string fixed(double x, int digits = 2) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.*f", digits, x);
  return buf;
}

std::string times(double a, double b) {
  return b > 0 ? fixed(a / b) + "x" : "-";
}

/// "step 120 (shares): b slower than predicted; [0.5,0.5] -> [0.75,0.25]"
/// per rebalance, or "none" when the report has none (or no such field).
std::string rebalances_text(const job_result& r) {
  if (!r.rebalances.is_array() || r.rebalances.empty())
    return r.rebalances.is_array() ? "none" : "none (the report has no balance.rebalances)";
  std::string s;
  for (const auto& x : r.rebalances) {
    if (!s.empty())
      s += "; ";
    s += "step " + x.value("step", nlohmann::json()).dump() + " (" + x.value("kind", "?") +
         "): " + x.value("why", "?") + ", " + x.value("old", nlohmann::json()).dump() + " -> " +
         x.value("new", nlohmann::json()).dump();
  }
  return s;
}

/// Per replica: compute and all-reduce (its wait for the other included)
/// per step; the rest of the step is inputs crossing processes, the
/// supervisor's loaders and step control.
void print_breakdown(const char* what, const job_result& r, double ideal, int batch) {
  std::printf("    %-6s step %6.2f ms (ideal %6.2f ms):", what, r.step_ms,
              ideal > 0 ? 1e3 * batch / ideal : 0.0);
  for (const auto& s : r.stages)
    std::printf("  %s compute %.2f + all-reduce %.2f, rest %.2f ms;",
                s.node.empty() ? ("replica " + std::to_string(s.replica)).c_str() : s.node.c_str(),
                s.compute_ms, s.allreduce_ms, r.step_ms - s.compute_ms - s.allreduce_ms);
  std::printf(" shares %s\n", nlohmann::json(r.batch_shares).dump().c_str());
}

void print_dp(const std::vector<ratio_result>& rs, const job_result& a_alone,
              const peer_result& peer, int batch) {
  std::printf("\ndata parallelism (--dp 2), samples/s:\n");
  std::printf("%-6s %8s %8s %8s %-10s %8s %8s %8s %9s %8s %8s %8s\n", "ratio", "equal", "auto",
              "best", "(shares)", "ideal", "auto/eq", "auto/bst", "best/eq", "eq/ideal", "bst/idl",
              "DDP eq");
  for (const auto& r : rs) {
    const auto& best = r.best_hand();
    const double ideal = a_alone.samples_per_second + r.b_alone.samples_per_second;
    std::string ddp = "-";
    for (const auto& [ratio, sps] : peer.samples_per_second)
      if (ratio == r.ratio)
        ddp = fixed(sps, 0);
    std::printf("%-6s %8.0f %8.0f %8.0f %-10s %8.0f %8s %8s %9s %8s %8s %8s\n",
                (number(r.ratio) + ":1").c_str(), r.equal.samples_per_second,
                r.automatic.samples_per_second, best.samples_per_second,
                best.label.substr(best.label.find(' ') + 1).c_str(), ideal,
                times(r.automatic.samples_per_second, r.equal.samples_per_second).c_str(),
                times(r.automatic.samples_per_second, best.samples_per_second).c_str(),
                times(best.samples_per_second, r.equal.samples_per_second).c_str(),
                times(r.equal.samples_per_second, ideal).c_str(),
                times(best.samples_per_second, ideal).c_str(), ddp.c_str());
  }
  std::printf("ideal = a alone (%.0f samples/s) + b alone at its quota; where the rest goes, "
              "per step (compute and all-reduce from the report's stages; the all-reduce time "
              "includes waiting for the slower replica; rest = inputs crossing processes, the "
              "supervisor's loaders, step control):\n",
              a_alone.samples_per_second);
  for (const auto& r : rs) {
    const double ideal = a_alone.samples_per_second + r.b_alone.samples_per_second;
    std::printf("  %s:1 (b alone %.0f samples/s)\n", number(r.ratio).c_str(),
                r.b_alone.samples_per_second);
    print_breakdown("equal", r.equal, ideal, batch);
    print_breakdown("auto", r.automatic, ideal, batch);
    print_breakdown("best", r.best_hand(), ideal, batch);
  }
}

void print_midrun(const midrun_result& m, const std::vector<ratio_result>& rs) {
  std::printf("\nmid-run slowdown (b from a full core to %s of it at step %lld of the off run, "
              "%lld of the auto run):\n",
              fixed(m.fraction, 3).c_str(), static_cast<long long>(m.off.throttled_at_step),
              static_cast<long long>(m.automatic.throttled_at_step));
  for (const auto* r : {&m.off, &m.automatic})
    std::printf("  %-12s %8.0f samples/s, %8.0f after the slowdown; rebalances: %s\n",
                r->label.c_str(), r->samples_per_second, r->after_samples_per_second,
                rebalances_text(*r).c_str());
  std::printf("  auto / off: %s over the run, %s after the slowdown\n",
              times(m.automatic.samples_per_second, m.off.samples_per_second).c_str(),
              times(m.automatic.after_samples_per_second, m.off.after_samples_per_second).c_str());
  for (const auto& r : rs)
    if (r.ratio == midrun_ratio)
      std::printf("  for the new speeds, from the dp part: best hand %.0f (%s), equal %.0f\n",
                  r.best_hand().samples_per_second, r.best_hand().label.c_str(),
                  r.equal.samples_per_second);
}

/// "a: [0, 3) 3 layers, b: [3, 5) 2 layers"
std::string placement_text(const job_result& r) {
  std::string s;
  for (const auto& st : r.stages) {
    if (!s.empty())
      s += ", ";
    s += st.node + ":";
    if (st.layers.size() == 2)
      s += " [" + std::to_string(st.layers[0]) + ", " + std::to_string(st.layers[1]) + ")";
  }
  return s;
}

void print_pipeline(const pipeline_result& p) {
  const auto& best = p.best_split();
  std::printf("\npipeline (--pp 2, b at 1/%s of its core), ms per step:\n",
              number(p.ratio).c_str());
  for (const auto* r : {&p.automatic, &p.flops})
    std::printf("  %-16s %7.2f ms  %8.0f samples/s  %s\n", r->label.c_str(), r->step_ms,
                r->samples_per_second, placement_text(*r).c_str());
  for (const auto& r : p.splits)
    std::printf("  %-16s %7.2f ms  %8.0f samples/s  %s%s\n", r.label.c_str(), r.step_ms,
                r.samples_per_second, placement_text(r).c_str(),
                &r == &best ? "  <- best split" : "");
  std::printf("  auto / best split step time: %s; flops / best: %s\n",
              times(p.automatic.step_ms, best.step_ms).c_str(),
              times(p.flops.step_ms, best.step_ms).c_str());
}

/// The layers of the stage on node `node` (0 when none).
int layers_on(const job_result& r, const std::string& node) {
  for (const auto& s : r.stages)
    if (s.node == node && s.layers.size() == 2)
      return s.layers[1] - s.layers[0];
  return 0;
}

void line(const std::string& what, bool ok, const std::string& got) {
  std::printf("  %-70s %-6s %s\n", what.c_str(), ok ? "met" : "MISSED", got.c_str());
}

/// The targets against this run's figures.
void print_targets(const std::vector<ratio_result>& rs, const midrun_result* m,
                   const pipeline_result* p) {
  std::printf("\ntargets (issue 15):\n");
  if (!m && !p && std::none_of(rs.begin(), rs.end(), [](const auto& r) { return r.ratio == 3; }))
    std::printf("  (none: they need ratio 3 in the dp part, midrun or pp)\n");
  for (const auto& r : rs) {
    if (r.ratio != 3)
      continue;
    const double a = r.automatic.samples_per_second;
    line("3:1 auto >= 0.95x best hand-set", a >= 0.95 * r.best_hand().samples_per_second,
         times(a, r.best_hand().samples_per_second));
    line("3:1 auto >= 1.25x equal shares", a >= 1.25 * r.equal.samples_per_second,
         times(a, r.equal.samples_per_second));
  }
  if (p) {
    line("pp auto: fewer layers on the slow node b",
         layers_on(p->automatic, "b") < layers_on(p->automatic, "a"),
         "a " + std::to_string(layers_on(p->automatic, "a")) + ", b " +
             std::to_string(layers_on(p->automatic, "b")));
    line("pp auto step time within 10% of the best split",
         p->automatic.step_ms <= 1.10 * p->best_split().step_ms,
         times(p->automatic.step_ms, p->best_split().step_ms));
  }
  if (m) {
    const auto& rb = m->automatic.rebalances;
    std::int64_t first = -1, after = 0;
    if (rb.is_array())
      for (const auto& x : rb)
        if (x.value("step", std::int64_t{-1}) >= m->automatic.throttled_at_step) {
          first = first < 0 ? x.value("step", std::int64_t{-1}) : first;
          ++after;
        }
    const auto delay = first - m->automatic.throttled_at_step;
    line("mid-run: rebalanced within 20 steps of the slowdown", first >= 0 && delay <= 20,
         first >= 0 ? std::to_string(delay) + " steps" : "no rebalance");
    line("mid-run: at most one rebalance for the change", after <= 1,
         std::to_string(after) + " after the slowdown");
    for (const auto& r : rs)
      if (r.ratio == midrun_ratio) {
        const double best = r.best_hand().samples_per_second;
        line("mid-run: after it, within 10% of the best hand-set for the new speeds",
             m->automatic.after_samples_per_second >= 0.9 * best,
             times(m->automatic.after_samples_per_second, best) + " (best: " + r.best_hand().label +
                 ", dp part)");
      }
  }
}

nlohmann::json results_json(const options& o, unsigned cores, const std::string& load,
                            const job_result* a_alone, const std::vector<ratio_result>& rs,
                            const midrun_result* m, const pipeline_result* p,
                            const peer_result& peer) {
  nlohmann::json doc{
      {"cores", cores},        {"load_average_start", load}, {"load_average_end", load_average()},
      {"steps", o.f.steps},    {"batch", o.f.batch},         {"quick", o.f.quick},
      {"peer", peer.to_json()}};
  if (a_alone)
    doc["a_alone"] = a_alone->to_json();
  for (const auto& r : rs) {
    auto j = r.to_json();
    if (a_alone)
      j["ideal_samples_per_second"] = a_alone->samples_per_second + r.b_alone.samples_per_second;
    doc["dp"].push_back(std::move(j));
  }
  if (m)
    doc["midrun"] = m->to_json();
  if (p)
    doc["pipeline"] = p->to_json();
  return doc;
}

/// The machine's check: the throttle script works and taskset is there.
/// Fills `thr_path` and `taskset`; the reason to skip otherwise.
std::optional<std::string> cannot_run(const flags& f, const fs::path& dir, fs::path& thr_path,
                                      std::string& taskset) {
  const auto script = find_throttle(f);
  if (!script)
    return std::string{"no scripts/throttle above this executable or in ./scripts "
                       "(--throttle-script FILE)"};
  thr_path = *script;
  if (auto why = throttle{thr_path, dir}.unavailable())
    return *why;
  const auto ts = find_on_path("taskset");
  if (!ts)
    return std::string{"no taskset on PATH (util-linux) to pin the nodes to cores"};
  taskset = ts->string();
  return std::nullopt;
}

int bench_hetero(options& o) {
  auto& f = o.f;
  const auto parts = chosen_parts(o.parts);
  for (const char* file : {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"})
    if (!fs::is_regular_file(fs::path{f.data_dir} / file))
      throw runtime::input_error("--data: no " + (fs::path{f.data_dir} / file).string());
  runtime::temp_dir tmp_dir("troupe-bench-hetero-");
  const fs::path dir = f.work_dir.empty() ? tmp_dir.path() : fs::absolute(f.work_dir);
  fs::create_directories(dir);
  fs::path thr_path;
  std::string taskset;
  if (auto why = cannot_run(f, dir, thr_path, taskset)) {
    std::printf("troupe bench hetero: skipped: cannot throttle a process here: %s\n", why->c_str());
    return exit_skip;
  }
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  const auto load = load_average();
  std::printf("troupe bench hetero: %u cores, load %s; node a on core 0, node b on core 1 "
              "under a CPU quota (%s), 1-thread CPU devices; mlp on MNIST, --batch %d "
              "--steps %lld%s\n",
              cores, load.c_str(), thr_path.c_str(), f.batch, static_cast<long long>(f.steps),
              f.quick ? " (--quick)" : "");
  if (cores < 2)
    std::printf("warning: one core: both nodes share it, the ratios are not what they say\n");
  std::fflush(stdout);
  const throttle thr{thr_path, dir};
  const context x{
      f, thr, dir, taskset, "hetero-" + std::to_string(::getpid()), static_cast<int>(cores)};
  std::optional<job_result> a_alone;
  std::vector<ratio_result> rs;
  if (parts.count("dp")) {
    std::printf("a alone ...\n");
    a_alone = run_alone(x, "a", 0, 1);
    for (double r : f.ratios) {
      std::printf("ratio %s:1 (b at %s of a core) ...\n", number(r).c_str(),
                  fixed(1 / r, 3).c_str());
      rs.push_back(run_ratio(x, r, f.quick ? std::vector<double>{r} : hand_trials));
    }
  }
  std::optional<midrun_result> m;
  if (parts.count("midrun")) {
    std::printf("mid-run slowdown ...\n");
    m = run_midrun(x, midrun_ratio);
  }
  std::optional<pipeline_result> p;
  if (parts.count("pp")) {
    std::printf("pipeline ...\n");
    p = run_pipeline(x, pipeline_ratio);
  }
  peer_result peer;
  if (parts.count("peer")) {
    std::printf("PyTorch DDP ...\n");
    peer = run_peer(x);
  } else {
    peer.skipped = "not asked for (--parts)";
  }
  if (a_alone)
    print_dp(rs, *a_alone, peer, f.batch);
  if (!peer.skipped.empty())
    std::printf("PyTorch DDP peer: skipped (%s)\n", peer.skipped.c_str());
  else
    std::printf("PyTorch DDP peer: torch %s, 2 processes pinned like the nodes, rank 1 "
                "throttled; equal split only\n",
                peer.torch_version.c_str());
  if (m)
    print_midrun(*m, rs);
  if (p)
    print_pipeline(*p);
  print_targets(rs, m ? &*m : nullptr, p ? &*p : nullptr);
  const auto load_end = load_average();
  std::printf("load average after: %s%s\n", load_end.c_str(), busy_note(load_end, cores));
  if (!f.json.empty())
    write_json_file(f.json, results_json(o, cores, load, a_alone ? &*a_alone : nullptr, rs,
                                         m ? &*m : nullptr, p ? &*p : nullptr, peer));
  return exit_ok;
}

void add_flags(CLI::App& cmd, options& o) {
  auto& f = o.f;
  cmd.add_option("--data", f.data_dir, "MNIST directory")->capture_default_str();
  cmd.add_option("--steps", f.steps, "steps per job")
      ->check(CLI::Range(std::int64_t{10}, std::int64_t{1000000}))
      ->capture_default_str();
  cmd.add_option("--batch", f.batch, "global batch")
      ->check(CLI::Range(16, 65536))
      ->capture_default_str();
  cmd.add_option("--ratios", f.ratios,
                 "speed ratios a:b of the dp part (b at 1/r of its core), comma-separated")
      ->delimiter(',')
      ->check(CLI::Range(1.0, 20.0))
      ->capture_default_str();
  cmd.add_option("--repeats", f.repeats,
                 "runs of each job, interleaved; the median run's figures count")
      ->check(CLI::Range(1, 20))
      ->capture_default_str();
  cmd.add_option("--parts", o.parts, "comma-separated: dp, midrun, pp, peer, or all")
      ->capture_default_str();
  cmd.add_flag("--quick", f.quick,
               "a smoke test: at most 60 steps, one hand-set trial per ratio (k = r)");
  cmd.add_flag("--no-peer", f.no_peer, "skip PyTorch DDP");
  cmd.add_option("--throttle-script", f.throttle_script,
                 "scripts/throttle (default: found above this executable, or ./scripts)");
  cmd.add_option("--python", f.python, "the interpreter with torch (DDP peer)")
      ->capture_default_str();
  cmd.add_option("--ddp-peer", f.ddp_peer,
                 "the DDP script (default: troupe_peer_ddp.py next to this executable, else "
                 "bench/peers/ddp_mlp.py)");
  cmd.add_option("--json", f.json, "also write every figure to FILE");
  cmd.add_option("--work-dir", f.work_dir,
                 "keep the logs and reports in DIR (default: a temporary directory, removed "
                 "at the end)");
}

} // namespace

command_action add_bench_hetero_command(CLI::App& bench) {
  auto* cmd = bench.add_subcommand(
      "hetero", "unlike nodes on one machine (one under a CPU quota): equal shares, --balance "
                "auto, the best hand-set shares and the ideal; a mid-run slowdown; a pipeline's "
                "partition; PyTorch DDP under the same throttling");
  auto o = std::make_shared<options>();
  add_flags(*cmd, *o);
  return [o] {
    if (o->f.quick)
      o->f.steps = std::min<std::int64_t>(o->f.steps, 60);
    return bench_hetero(*o);
  };
}

} // namespace troupe::apps
