// `troupe bench hetero`: the throttle, the clusters of unlike nodes and the
// jobs run on them (see bench_hetero_runs.hpp).

#include "apps/troupe/bench/bench_hetero_runs.hpp"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <stdexcept>
#include <thread>

#include "apps/troupe/bench/bench_local_cluster.hpp"
#include "apps/troupe/bench/bench_util.hpp"
#include "apps/troupe/child_process.hpp"

namespace troupe::apps::hetero_bench {

namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;
using namespace std::chrono_literals;

// -- throttle ---------------------------------------------------------------

throttle::throttle(fs::path script, fs::path log_dir)
    : script_(std::move(script)), log_dir_(std::move(log_dir)) {}

int throttle::call(const std::vector<std::string>& args, std::string& output) const {
  std::vector<std::string> argv{script_.string()};
  argv.insert(argv.end(), args.begin(), args.end());
  const auto log = log_dir_ / ("throttle-" + args.front() + ".log");
  child_process p{argv, log};
  auto st = p.wait_for(60s);
  if (!st) {
    p.stop();
    st = 124;
  }
  std::ifstream in(log);
  output.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return *st;
}

std::optional<std::string> throttle::unavailable() const {
  std::string out;
  const int st = call({"check"}, out);
  if (st == 0)
    return std::nullopt;
  const auto why = last_line(out);
  return script_.string() + " check (exit " + std::to_string(st) +
         "): " + (why.empty() ? "no reason given" : why);
}

void throttle::set(const std::string& name, pid_t pid, double fraction) const {
  std::string out;
  if (int st = call({"set", name, std::to_string(pid), number(fraction)}, out); st != 0)
    throw std::runtime_error(script_.string() + " set " + name + " failed (exit " +
                             std::to_string(st) + "): " + last_line(out));
}

void throttle::clear(const std::string& name) const {
  std::string out;
  if (int st = call({"clear", name}, out); st != 0)
    throw std::runtime_error(script_.string() + " clear " + name + " failed (exit " +
                             std::to_string(st) + "): " + last_line(out));
}

std::vector<std::string> throttle::run_prefix(const std::string& name, double fraction) const {
  return {script_.string(), "run", name, number(fraction)};
}

throttle_group::~throttle_group() {
  try {
    t_.clear(name_);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "warning: %s\n", e.what());
  }
}

// -- figures ----------------------------------------------------------------

nlohmann::json stage_time::to_json() const {
  return {{"replica", replica}, {"stage", stage},           {"node", node},
          {"layers", layers},   {"compute_ms", compute_ms}, {"allreduce_ms", allreduce_ms}};
}

nlohmann::json job_result::to_json() const {
  nlohmann::json st = nlohmann::json::array();
  for (const auto& s : stages)
    st.push_back(s.to_json());
  nlohmann::json j{{"label", label},
                   {"args", args},
                   {"samples_per_second", samples_per_second},
                   {"step_ms", step_ms},
                   {"steps", steps},
                   {"batch_shares", batch_shares},
                   {"stages", st},
                   {"rebalances", rebalances}};
  if (repeats.size() > 1)
    j["repeats"] = repeats;
  if (throttled_at_step >= 0)
    j["throttled_at"] = {{"step", throttled_at_step},
                         {"seconds", throttled_at_s},
                         {"samples_per_second_after", after_samples_per_second}};
  return j;
}

namespace {

const job_result& fastest(const std::vector<job_result>& rs) {
  if (rs.empty())
    throw std::logic_error("no runs to pick the fastest of");
  return *std::max_element(rs.begin(), rs.end(), [](const auto& a, const auto& b) {
    return a.samples_per_second < b.samples_per_second;
  });
}

nlohmann::json all_json(const std::vector<job_result>& rs) {
  nlohmann::json j = nlohmann::json::array();
  for (const auto& r : rs)
    j.push_back(r.to_json());
  return j;
}

} // namespace

const job_result& ratio_result::best_hand() const {
  return fastest(hand);
}

nlohmann::json ratio_result::to_json() const {
  return {
      {"ratio", ratio},         {"equal", equal.to_json()},       {"auto", automatic.to_json()},
      {"hand", all_json(hand)}, {"best_hand", best_hand().label}, {"b_alone", b_alone.to_json()}};
}

nlohmann::json midrun_result::to_json() const {
  return {{"fraction", fraction}, {"off", off.to_json()}, {"auto", automatic.to_json()}};
}

const job_result& pipeline_result::best_split() const {
  return fastest(splits);
}

nlohmann::json pipeline_result::to_json() const {
  return {{"ratio", ratio},
          {"auto", automatic.to_json()},
          {"flops", flops.to_json()},
          {"splits", all_json(splits)},
          {"best_split", best_split().label}};
}

// -- clusters and jobs --------------------------------------------------------

std::vector<std::string> base_args(const flags& f) {
  // MNIST's 60000 samples end an epoch before --steps at batch 256: enough
  // epochs that --steps decides.
  const auto epochs = f.steps * f.batch / 60000 + 2;
  return {"--model",   "mlp",
          "--data",    fs::absolute(f.data_dir).string(),
          "--batch",   std::to_string(f.batch),
          "--steps",   std::to_string(f.steps),
          "--epochs",  std::to_string(epochs),
          "--no-eval", "--no-progress"};
}

namespace {

/// One node of a bench cluster: pinned to `core`, at `fraction` of it from
/// its start (>= 1: unthrottled; the bench may throttle it later).
struct node_spec {
  std::string name;
  int core = 0;
  double fraction = 1;
};

/// A local cluster whose nodes' cgroups are cleared after its processes
/// stopped (members go in reverse order).
struct cluster {
  std::vector<std::unique_ptr<throttle_group>> groups; ///< one per node, in node order
  std::unique_ptr<local_cluster> c;
};

cluster start_cluster(const context& x, const std::vector<node_spec>& nodes,
                      const std::string& tag) {
  cluster out;
  std::vector<std::string> names;
  std::vector<node_launch> launches;
  for (const auto& n : nodes) {
    out.groups.push_back(
        std::make_unique<throttle_group>(x.thr, x.group_prefix + "-" + tag + "-" + n.name));
    node_launch how;
    how.measure = true; // as deployed: a node measures its devices at start
    if (n.fraction < 1)
      how.prefix = x.thr.run_prefix(out.groups.back()->name(), n.fraction);
    how.prefix.insert(how.prefix.end(),
                      {x.taskset, "-c", std::to_string(n.core % std::max(1, x.cores))});
    names.push_back(n.name);
    launches.push_back(std::move(how));
  }
  const auto dir = x.dir / tag;
  fs::create_directories(dir);
  out.c = std::make_unique<local_cluster>(dir, names, 1, launches);
  return out;
}

/// The current job's id and step in /status (id 0 before the first job).
std::pair<std::int64_t, std::int64_t> job_step(const local_cluster& c) {
  const auto job = c.status().at("job");
  std::int64_t step = -1;
  if (auto p = job.find("progress"); p != job.end() && p->is_object())
    step = p->value("step", std::int64_t{-1});
  return {job.value("id", std::int64_t{0}), step};
}

/// A change made while a job runs: `act` once it has done `step` steps.
struct step_action {
  std::int64_t step = -1;
  std::function<void()> act;
};

/// The last step /status showed for a job, and when it first showed it.
struct step_seen {
  std::int64_t step = -1;
  clock_type::time_point at;
};

/// Follows the job after `old_id` in /status until it has done `target`
/// steps or its client exits: the last step seen.
step_seen follow_until(const local_cluster& c, child_process& client, std::int64_t old_id,
                       std::int64_t target) {
  step_seen last;
  const auto deadline = clock_type::now() + 600s;
  for (;;) {
    const auto [id, done] = job_step(c);
    if (id != old_id && done > last.step)
      last = {done, clock_type::now()};
    if (last.step >= target || client.wait_for(0ms) || clock_type::now() > deadline)
      return last;
    std::this_thread::sleep_for(5ms);
  }
}

/// Does `at` once the job has done its step; after it, the job's samples/s
/// from the change to its last step (what the new speeds give).
void act_mid_run(const context& x, const local_cluster& c, child_process& client,
                 std::int64_t old_id, const step_action& at, job_result& out) {
  const auto t0 = clock_type::now();
  const auto seen = follow_until(c, client, old_id, at.step);
  if (seen.step < at.step)
    throw std::runtime_error("the job '" + out.label + "' ended before step " +
                             std::to_string(at.step) + ":\n" + client.log_tail());
  at.act();
  const auto changed = clock_type::now();
  out.throttled_at_step = seen.step;
  out.throttled_at_s = std::chrono::duration<double>(changed - t0).count();
  const auto end = follow_until(c, client, old_id, x.f.steps);
  const double s = std::chrono::duration<double>(end.at - changed).count();
  if (end.step > seen.step && s > 0)
    out.after_samples_per_second = static_cast<double>((end.step - seen.step) * x.f.batch) / s;
}

std::string file_name(const std::string& label) {
  std::string s = label;
  for (auto& ch : s)
    if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '.')
      ch = '-';
  return s;
}

/// The plan's layers [first, last) and node of (replica, stage).
void plan_place(const nlohmann::json& plan, stage_time& s) {
  for (const auto& p : plan.value("stages", nlohmann::json::array()))
    if (p.value("replica", 0) == s.replica && p.value("stage", 0) == s.stage &&
        p.value("tp_rank", 0) == 0) {
      s.node = p.value("node", "");
      s.layers = p.value("layers", std::vector<int>{});
    }
}

void read_figures(const nlohmann::json& r, job_result& out) {
  // The whole job as its client saw it (job_samples_per_second: from the
  // submission on, measuring, every generation and re-plan included); the
  // trainer's own samples_per_second covers its last generation's steps.
  out.samples_per_second =
      r.value("job_samples_per_second", r.at("samples_per_second").get<double>());
  out.steps = r.value("steps", std::int64_t{0});
  const double batch = static_cast<double>(r.value("batch", std::int64_t{0}));
  out.step_ms = out.samples_per_second > 0 ? 1e3 * batch / out.samples_per_second : 0;
  const auto plan = r.value("plan", nlohmann::json::object());
  out.batch_shares = plan.value("batch_shares", std::vector<double>{});
  const double per_step = out.steps > 0 ? 1e3 / static_cast<double>(out.steps) : 0;
  for (const auto& s : r.value("stages", nlohmann::json::array())) {
    stage_time t;
    t.replica = s.value("replica", 0);
    t.stage = s.value("stage", 0);
    t.compute_ms = per_step * s.value("compute_seconds", 0.0);
    t.allreduce_ms = per_step * s.value("allreduce_seconds", 0.0);
    plan_place(plan, t);
    out.stages.push_back(std::move(t));
  }
  const auto b = r.find("balance");
  if (b != r.end() && b->is_object() && b->contains("rebalances"))
    out.rebalances = b->at("rebalances");
}

/// Runs one job on `c` (its flags after base_args), doing `at` mid-run;
/// `repeat` numbers its files when there are several.
job_result run_job(const context& x, const local_cluster& c, const std::string& label,
                   const std::vector<std::string>& job, int repeat, const step_action& at) {
  const auto name = file_name(label) + (x.f.repeats > 1 ? "-r" + std::to_string(repeat) : "");
  const auto report = c.dir() / (name + ".json");
  auto args = base_args(x.f);
  args.insert(args.end(), job.begin(), job.end());
  args.insert(args.end(), {"--report", report.string()});
  job_result out;
  out.label = label;
  out.args = job;
  const auto old_id = job_step(c).first;
  auto client = c.submit(args, "client-" + name);
  if (at.act)
    act_mid_run(x, c, *client, old_id, at, out);
  const auto st = client->wait_for(10min);
  if (st != 0)
    throw std::runtime_error(
        "the job '" + label + "' " +
        (st ? "failed (exit " + std::to_string(*st) + ")" : std::string{"timed out"}) + ":\n" +
        client->log_tail() + "\nsupervisor log:\n" + c.supervisor_log_tail());
  std::ifstream in(report);
  if (!in)
    throw std::runtime_error("the job '" + label + "' wrote no report " + report.string());
  read_figures(nlohmann::json::parse(in), out);
  std::printf("  %-28s %9.0f samples/s  %7.2f ms/step\n", label.c_str(), out.samples_per_second,
              out.step_ms);
  std::fflush(stdout);
  return out;
}

std::string shares_text(double k) {
  return number(k) + ",1";
}

/// A job to run: its label and flags (after base_args).
struct job_config {
  std::string label;
  std::vector<std::string> args;
};

/// Of one configuration's repeats, the run with the median samples/s (the
/// lower one of an even count), holding every repeat's figure.
job_result median_run(std::vector<job_result> rs) {
  std::vector<double> all;
  for (const auto& r : rs)
    all.push_back(r.samples_per_second);
  std::sort(rs.begin(), rs.end(), [](const auto& a, const auto& b) {
    return a.samples_per_second < b.samples_per_second;
  });
  auto m = std::move(rs.at((rs.size() - 1) / 2));
  m.repeats = std::move(all);
  return m;
}

/// Runs every configuration --repeats times, interleaved and rotated per
/// repeat (so that load drifting over time hits all alike), `after` after
/// each run; per configuration its median run, in `cfgs` order.
std::vector<job_result> run_configs(const context& x, const local_cluster& c,
                                    const std::vector<job_config>& cfgs, const step_action& at = {},
                                    const std::function<void()>& after = {}) {
  const int n = std::max(1, x.f.repeats);
  std::vector<std::vector<job_result>> runs(cfgs.size());
  for (int r = 0; r < n; ++r)
    for (std::size_t i = 0; i < cfgs.size(); ++i) {
      const auto k = (i + static_cast<std::size_t>(r)) % cfgs.size();
      runs[k].push_back(run_job(x, c, cfgs[k].label, cfgs[k].args, r, at));
      if (after)
        after();
    }
  std::vector<job_result> out;
  for (auto& rs : runs)
    out.push_back(median_run(std::move(rs)));
  return out;
}

} // namespace

job_result run_alone(const context& x, const std::string& name, int core, double fraction) {
  const auto tag = "alone-" + name + "-" + file_name(number(fraction));
  auto cl = start_cluster(x, {{name, core, fraction}}, tag);
  return run_configs(x, *cl.c, {{name + " alone at " + number(fraction), {"--dp", "1"}}}).at(0);
}

ratio_result run_ratio(const context& x, double ratio, const std::vector<double>& trials) {
  ratio_result out;
  out.ratio = ratio;
  {
    auto cl =
        start_cluster(x, {{"a", 0, 1}, {"b", 1, 1 / ratio}}, "dp-" + file_name(number(ratio)));
    std::vector<job_config> cfgs{{"equal", {"--dp", "2", "--balance", "off"}},
                                 {"auto", {"--dp", "2", "--balance", "auto"}}};
    for (double k : trials)
      cfgs.push_back({"shares " + shares_text(k),
                      {"--dp", "2", "--balance", "off", "--batch-shares", shares_text(k)}});
    auto rs = run_configs(x, *cl.c, cfgs);
    out.equal = std::move(rs.at(0));
    out.automatic = std::move(rs.at(1));
    out.hand.assign(std::make_move_iterator(rs.begin() + 2), std::make_move_iterator(rs.end()));
  }
  out.b_alone = run_alone(x, "b", 1, 1 / ratio);
  return out;
}

midrun_result run_midrun(const context& x, double ratio) {
  midrun_result out;
  out.fraction = 1 / ratio;
  auto cl = start_cluster(x, {{"a", 0, 1}, {"b", 1, 1}}, "midrun");
  const auto& group = cl.groups.at(1)->name();
  const pid_t b = cl.c->node_pid("b");
  const step_action slow{std::max<std::int64_t>(1, x.f.steps / 3),
                         [&] { x.thr.set(group, b, out.fraction); }};
  auto rs = run_configs(x, *cl.c,
                        {{"midrun off", {"--dp", "2", "--balance", "off"}},
                         {"midrun auto", {"--dp", "2", "--balance", "auto"}}},
                        slow, [&] { x.thr.clear(group); }); // b at full speed for the next run
  out.off = std::move(rs.at(0));
  out.automatic = std::move(rs.at(1));
  return out;
}

pipeline_result run_pipeline(const context& x, double ratio) {
  pipeline_result out;
  out.ratio = ratio;
  auto cl = start_cluster(x, {{"a", 0, 1}, {"b", 1, 1 / ratio}}, "pp");
  auto pp = [&](const std::string& label, std::vector<std::string> extra) {
    extra.insert(extra.begin(), {"--pp", "2", "--microbatches", std::to_string(x.f.microbatches)});
    return job_config{label, std::move(extra)};
  };
  auto rs = run_configs(x, *cl.c,
                        {pp("pp flops", {"--balance", "off", "--partition", "flops"}),
                         pp("pp auto", {"--balance", "auto"})});
  out.flops = std::move(rs.at(0));
  out.automatic = std::move(rs.at(1));
  // Every contiguous cut of the model's layers into two stages.
  int layers = 0;
  for (const auto& s : out.flops.stages)
    if (s.layers.size() == 2)
      layers = std::max(layers, s.layers[1]);
  if (layers < 2)
    throw std::runtime_error("pp flops: the report's plan names no layers of its stages");
  std::vector<job_config> splits;
  for (int i = 1; i < layers; ++i) {
    const auto split = std::to_string(i) + "," + std::to_string(layers - i);
    splits.push_back(pp("pp split " + split, {"--balance", "off", "--split", split}));
  }
  out.splits = run_configs(x, *cl.c, splits);
  return out;
}

} // namespace troupe::apps::hetero_bench
