#define BOOST_TEST_DYN_LINK
#define BOOST_TEST_MODULE actors_trace
#include <boost/test/unit_test.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <tuple>

#include <caf/actor_system.hpp>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include "actors/cluster/job.hpp"
#include "actors/pipeline/layer_shard.hpp"
#include "models/zoo.hpp"
#include "runtime/error.hpp"
#include "actors/protocol/system_config.hpp"

using namespace troupe;
namespace fs = std::filesystem;

namespace {

std::int64_t unix_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

/// One complete or instant event as the test reads it back.
struct read_event {
  std::string name, cat;
  double ts = 0, dur = 0; ///< microseconds from the trace's origin
  std::int64_t step = 0, mb = -1;
};

} // namespace

BOOST_AUTO_TEST_CASE(a_traced_pipeline_has_every_action_on_its_stage_track) {
  auto dir = fs::temp_directory_path() / ("troupe-trace-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  auto file = dir / "sub" / "trace.json"; // the directory is made up front
  actors::train_options o;
  o.model = "mlp";
  o.data_dir = std::string{TROUPE_SOURCE_DIR} + "/data/mnist";
  o.max_steps = 3;
  o.evaluate = false;
  o.progress = false;
  o.threads = 2;
  o.stages = 2;
  o.microbatches = 4;
  o.schedule = actors::schedule_kind::one_f_one_b;
  o.trace_file = file.string();
  const auto before = unix_ns();
  {
    actors::system_config cfg;
    caf::actor_system sys{cfg};
    auto r = actors::run_training(sys, o);
    BOOST_TEST(r.report.at("config").at("trace_file") == file.string());
  }
  const auto after = unix_ns();
  std::ifstream in(file);
  BOOST_REQUIRE_MESSAGE(in, "no trace at " << file);
  auto doc = nlohmann::json::parse(in); // throws on invalid JSON
  BOOST_TEST(doc.at("displayTimeUnit") == "ms");
  const auto& meta = doc.at("metadata");
  BOOST_TEST(meta.at("dropped_events") == 0);
  BOOST_TEST(meta.at("schedule") == "1f1b");
  const auto origin = meta.at("time_origin_unix_ns").get<std::int64_t>();

  // Named tracks: the trainer and one per stage, "stage k (node local/..., pid P)".
  std::map<std::pair<std::int64_t, std::int64_t>, std::string> names;
  std::map<std::pair<std::int64_t, std::int64_t>, std::vector<read_event>> tracks;
  double last_ts = -1;
  for (const auto& e : doc.at("traceEvents")) {
    auto track = std::make_pair(e.at("pid").get<std::int64_t>(), e.at("tid").get<std::int64_t>());
    if (e.at("ph") == "M") {
      if (e.at("name") == "thread_name")
        names[track] = e.at("args").at("name");
      continue;
    }
    read_event r{e.at("name"), e.at("cat"), e.at("ts"), e.value("dur", 0.0)};
    BOOST_TEST(r.ts >= last_ts); // sorted
    last_ts = r.ts;
    BOOST_TEST(r.dur >= 0.0);
    // Within the run's wall time (on the same clock, to a millisecond).
    auto unix = origin + static_cast<std::int64_t>(r.ts * 1e3);
    BOOST_TEST(unix >= before - 1'000'000);
    BOOST_TEST(unix + static_cast<std::int64_t>(r.dur * 1e3) <= after + 1'000'000);
    if (e.contains("args")) {
      r.step = e.at("args").value("step", std::int64_t{0});
      r.mb = e.at("args").value("mb", std::int64_t{-1});
    }
    tracks[track].push_back(r);
  }
  std::map<std::string, std::pair<std::int64_t, std::int64_t>> by_name;
  for (const auto& [track, name] : names)
    by_name[name.substr(0, name.find(" ("))] = track;
  BOOST_TEST_REQUIRE(by_name.count("trainer") == 1u);
  BOOST_TEST_REQUIRE(by_name.count("stage 0") == 1u);
  BOOST_TEST_REQUIRE(by_name.count("stage 1") == 1u);
  BOOST_TEST(names[by_name["stage 1"]].find("node local/") != std::string::npos);
  BOOST_TEST(names[by_name["stage 1"]].find("pid " + std::to_string(::getpid())) !=
             std::string::npos);

  for (int stage : {0, 1}) {
    const auto& events = tracks[by_name["stage " + std::to_string(stage)]];
    for (std::int64_t step = 0; step < 3; ++step) {
      std::map<std::int64_t, read_event> forward, backward, arrivals;
      int optimizer = 0, steps = 0, labels = 0;
      read_event span;
      for (const auto& e : events) {
        if (e.step != step)
          continue;
        if (e.name == "forward" && e.cat == "compute")
          BOOST_TEST(forward.emplace(e.mb, e).second);
        else if (e.name == "backward" && e.cat == "compute")
          BOOST_TEST(backward.emplace(e.mb, e).second);
        else if (e.name == "optimizer")
          ++optimizer;
        else if (e.name == "step")
          ++steps, span = e;
        else if (e.name == (stage == 0 ? "gradient" : "activation"))
          arrivals.emplace(e.mb, e);
        else if (e.name == "labels")
          ++labels;
      }
      BOOST_TEST(forward.size() == 4u, "stage " << stage << " step " << step);
      BOOST_TEST(backward.size() == 4u, "stage " << stage << " step " << step);
      BOOST_TEST(optimizer == 1, "stage " << stage << " step " << step);
      BOOST_TEST(steps == 1, "stage " << stage << " step " << step);
      BOOST_TEST(labels == (stage == 1 ? 4 : 0));
      for (const auto& [mb, f] : forward) {
        BOOST_REQUIRE(backward.count(mb));
        BOOST_TEST(backward[mb].ts >= f.ts + f.dur,
                   "backward of mb " << mb << " after its forward");
        // Every kernel inside its step's span, which began at the step_msg.
        BOOST_TEST(f.ts >= span.ts);
        BOOST_TEST(backward[mb].ts + backward[mb].dur <= span.ts + span.dur + 1e-3);
        // Stage 0 runs B(mb) only once the gradient is here; stage 1 F(mb) once the activation is.
        BOOST_REQUIRE(arrivals.count(mb));
        const auto& needs = stage == 0 ? backward[mb] : f;
        BOOST_TEST(needs.ts >= arrivals[mb].ts);
      }
    }
  }
  // The trainer's own track: a span per step, each with its wait for the batch.
  int trainer_steps = 0, batch_waits = 0;
  for (const auto& e : tracks[by_name["trainer"]]) {
    trainer_steps += e.name == "step" ? 1 : 0;
    batch_waits += e.name == "wait batch" ? 1 : 0;
  }
  BOOST_TEST(trainer_steps == 3);
  BOOST_TEST(batch_waits == 3);
  fs::remove_all(dir);
}

BOOST_AUTO_TEST_CASE(an_unwritable_trace_file_is_refused_before_training) {
  auto dir = fs::temp_directory_path() / ("troupe-trace-bad-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::ofstream(dir / "not-a-dir") << "x";
  actors::train_options o;
  o.data_dir = std::string{TROUPE_SOURCE_DIR} + "/data/mnist";
  o.max_steps = 1;
  o.evaluate = false;
  o.progress = false;
  o.threads = 1;
  o.trace_file = (dir / "not-a-dir" / "t.json").string();
  actors::system_config cfg;
  caf::actor_system sys{cfg};
  BOOST_CHECK_THROW(actors::run_training(sys, o), runtime::input_error);
  o.trace_file = dir.string() + "/";
  BOOST_CHECK_THROW(o.validate(), runtime::input_error);
  fs::remove_all(dir);
}

BOOST_AUTO_TEST_CASE(shard_configs_carry_tracing_and_default_it_off) {
  actors::shard_config c;
  c.model = models::zoo_model("mlp");
  c.chunks = {{0, c.model.layers.size()}};
  c.optimizer = {{"type", "sgd"}, {"lr", 0.1}};
  c.trace = true;
  auto j = to_json(c);
  BOOST_TEST(actors::shard_config_from_json(j).trace);
  j.erase("trace");
  BOOST_TEST(!actors::shard_config_from_json(j).trace);
  j["trace"] = "yes";
  BOOST_CHECK_THROW(actors::shard_config_from_json(j), runtime::input_error);
}

BOOST_AUTO_TEST_CASE(train_options_round_trip_the_trace_file) {
  actors::train_options o;
  o.trace_file = "/tmp/t.json";
  BOOST_TEST(actors::train_options_from_json(to_json(o)).trace_file == "/tmp/t.json");
}
