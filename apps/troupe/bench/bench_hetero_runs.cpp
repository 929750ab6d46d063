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
  if (throttled_at_step >= 0)
    j["throttled_at"] = {{"step", throttled_at_step}, {"seconds", throttled_at_s}};
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

/// Waits until the job after `old_id` has done `step` steps; the step seen.
std::int64_t wait_for_step(const local_cluster& c, child_process& client, std::int64_t old_id,
                           std::int64_t step) {
  const auto deadline = clock_type::now() + 300s;
  for (;;) {
    const auto [id, done] = job_step(c);
    if (id != old_id && done >= step)
      return done;
    if (client.wait_for(0ms))
      throw std::runtime_error("the job ended before step " + std::to_string(step) + ":\n" +
                               client.log_tail());
    if (clock_type::now() > deadline)
      throw std::runtime_error("the job did not reach step " + std::to_string(step));
    std::this_thread::sleep_for(5ms);
  }
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
  out.samples_per_second = r.at("samples_per_second").get<double>();
  out.steps = r.value("steps", std::int64_t{0});
  const double train_s = r.value("train_seconds", 0.0);
  out.step_ms = out.steps > 0 ? 1e3 * train_s / static_cast<double>(out.steps) : 0;
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

/// Runs one job on `c` (its flags after base_args), doing `at` mid-run.
job_result run_job(const context& x, const local_cluster& c, const std::string& label,
                   const std::vector<std::string>& job, const step_action& at = {}) {
  const auto name = file_name(label);
  const auto report = c.dir() / (name + ".json");
  auto args = base_args(x.f);
  args.insert(args.end(), job.begin(), job.end());
  args.insert(args.end(), {"--report", report.string()});
  job_result out;
  out.label = label;
  out.args = job;
  const auto old_id = job_step(c).first;
  const auto t0 = clock_type::now();
  auto client = c.submit(args, "client-" + name);
  if (at.act) {
    out.throttled_at_step = wait_for_step(c, *client, old_id, at.step);
    at.act();
    out.throttled_at_s = std::chrono::duration<double>(clock_type::now() - t0).count();
  }
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

} // namespace

job_result run_alone(const context& x, const std::string& name, int core, double fraction) {
  const auto tag = "alone-" + name + "-" + file_name(number(fraction));
  auto cl = start_cluster(x, {{name, core, fraction}}, tag);
  return run_job(x, *cl.c, name + " alone at " + number(fraction), {"--dp", "1"});
}

ratio_result run_ratio(const context& x, double ratio, const std::vector<double>& trials) {
  ratio_result out;
  out.ratio = ratio;
  const auto tag = "dp-" + file_name(number(ratio));
  {
    auto cl = start_cluster(x, {{"a", 0, 1}, {"b", 1, 1 / ratio}}, tag);
    const std::vector<std::string> dp{"--dp", "2"};
    auto with = [&](std::vector<std::string> extra) {
      extra.insert(extra.begin(), dp.begin(), dp.end());
      return extra;
    };
    out.equal = run_job(x, *cl.c, "equal", with({"--balance", "off"}));
    out.automatic = run_job(x, *cl.c, "auto", with({"--balance", "auto"}));
    for (double k : trials)
      out.hand.push_back(run_job(x, *cl.c, "shares " + shares_text(k),
                                 with({"--balance", "off", "--batch-shares", shares_text(k)})));
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
  for (const char* mode : {"off", "auto"}) {
    auto r =
        run_job(x, *cl.c, std::string{"midrun "} + mode, {"--dp", "2", "--balance", mode}, slow);
    x.thr.clear(group); // b at full speed again for the next run
    (std::string{mode} == "off" ? out.off : out.automatic) = std::move(r);
  }
  return out;
}

pipeline_result run_pipeline(const context& x, double ratio) {
  pipeline_result out;
  out.ratio = ratio;
  auto cl = start_cluster(x, {{"a", 0, 1}, {"b", 1, 1 / ratio}}, "pp");
  const std::vector<std::string> pp{"--pp", "2", "--microbatches",
                                    std::to_string(x.f.microbatches)};
  auto with = [&](std::vector<std::string> extra) {
    extra.insert(extra.begin(), pp.begin(), pp.end());
    return extra;
  };
  out.flops = run_job(x, *cl.c, "pp flops", with({"--balance", "off", "--partition", "flops"}));
  out.automatic = run_job(x, *cl.c, "pp auto", with({"--balance", "auto"}));
  // Every contiguous cut of the model's layers into two stages.
  int layers = 0;
  for (const auto& s : out.flops.stages)
    if (s.layers.size() == 2)
      layers = std::max(layers, s.layers[1]);
  if (layers < 2)
    throw std::runtime_error("pp flops: the report's plan names no layers of its stages");
  for (int i = 1; i < layers; ++i) {
    const auto split = std::to_string(i) + "," + std::to_string(layers - i);
    out.splits.push_back(
        run_job(x, *cl.c, "pp split " + split, with({"--balance", "off", "--split", split})));
  }
  return out;
}

} // namespace troupe::apps::hetero_bench
