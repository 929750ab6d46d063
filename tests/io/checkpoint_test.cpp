#define BOOST_TEST_DYN_LINK
#define BOOST_TEST_MODULE io_checkpoint
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

#include "runtime/io/checkpoint.hpp"
#include "runtime/io/safetensors.hpp"
#include "temp_dir.hpp"

using namespace troupe;
using runtime::checkpoint;
namespace fs = std::filesystem;

namespace {

/// A small checkpoint whose every file depends on `step`, so checkpoints of
/// different steps differ in every file and a mix of two is detectable.
checkpoint make_checkpoint(int step) {
  auto v = [&](float base, int n) {
    std::vector<float> r;
    for (int i = 0; i < n; ++i)
      r.push_back(base + static_cast<float>(step * 100 + i));
    return r;
  };
  checkpoint ck;
  ck.params = {{"0.weight", runtime::tensor::from_vector<float>({3, 4}, v(0.5f, 12))},
               {"0.bias", runtime::tensor::from_vector<float>({3}, v(0.25f, 3))}};
  ck.optimizer_state = {
      {"0.weight.exp_avg", runtime::tensor::from_vector<float>({3, 4}, v(1.5f, 12))}};
  ck.optimizer_meta = {{"type", "adam"}, {"step", std::to_string(step)}};
  ck.trainer_state = {{"global_step", step}, {"epoch", step / 10}};
  ck.rng = {{"seed", 7}, {"counter", step * 3}};
  ck.data_loader = {{"epoch", step / 10}, {"batch_index", step % 10}};
  ck.model = {{"spec", "mlp"}, {"layers", 1}};
  ck.config = {{"lr", 0.01}, {"written_at_step", step}};
  return ck;
}

bool same_tensors(const runtime::named_tensor_list& a, const runtime::named_tensor_list& b) {
  if (a.size() != b.size())
    return false;
  // read_safetensors returns tensors sorted by name; compare by name.
  for (const auto& [name, t] : a) {
    auto it = std::find_if(b.begin(), b.end(), [&](const auto& e) { return e.first == name; });
    if (it == b.end() || it->second.shape() != t.shape())
      return false;
    auto x = t.values<float>();
    auto y = it->second.values<float>();
    if (!std::equal(x.begin(), x.end(), y.begin(), y.end()))
      return false;
  }
  return true;
}

bool same(const checkpoint& a, const checkpoint& b) {
  return same_tensors(a.params, b.params) && same_tensors(a.optimizer_state, b.optimizer_state) &&
         a.optimizer_meta == b.optimizer_meta && a.trainer_state == b.trainer_state &&
         a.rng == b.rng && a.data_loader == b.data_loader && a.model == b.model &&
         a.config == b.config;
}

/// The steps a write reports to its hooks, in order.
std::vector<std::string> write_steps(const fs::path& dir) {
  std::vector<std::string> steps;
  runtime::checkpoint_write_hooks hooks{[&](std::string_view s) { steps.emplace_back(s); }};
  runtime::write_checkpoint(dir, make_checkpoint(0), hooks);
  return steps;
}

/// Writes `ck` into `dir` in a forked child that kills itself with SIGKILL after
/// the write's step number `kill_at` (0-based). True when the child died so.
bool crash_write(const fs::path& dir, const checkpoint& ck, std::size_t kill_at) {
  pid_t pid = ::fork();
  if (pid < 0)
    throw std::runtime_error("fork failed");
  if (pid == 0) {
    std::size_t n = 0;
    runtime::checkpoint_write_hooks hooks{[&](std::string_view) {
      if (n++ == kill_at)
        std::raise(SIGKILL);
    }};
    try {
      runtime::write_checkpoint(dir, ck, hooks);
    } catch (...) {
      ::_exit(3);
    }
    ::_exit(0);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0)
    if (errno != EINTR)
      throw std::runtime_error("waitpid failed");
  return WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
}

} // namespace

BOOST_AUTO_TEST_CASE(round_trip_and_replace) {
  test::temp_dir tmp;
  const auto dir = tmp / "ck";
  runtime::write_checkpoint(dir, make_checkpoint(1));
  BOOST_TEST(same(runtime::read_checkpoint(dir), make_checkpoint(1)));
  BOOST_TEST(!same(make_checkpoint(1), make_checkpoint(2)));
  runtime::write_checkpoint(dir, make_checkpoint(2));
  BOOST_TEST(same(runtime::read_checkpoint(dir), make_checkpoint(2)));
  // A finished checkpoint has today's layout, readable without troupe's reader.
  for (const char* name : {"model.safetensors", "optimizer.safetensors", "trainer_state.json",
                           "rng.json", "data_loader.json", "manifest.json"})
    BOOST_TEST(fs::is_regular_file(dir / name), name);
  BOOST_TEST(!fs::exists(dir / ".incoming"));
  BOOST_TEST(!fs::exists(dir / ".committed"));
  auto model = runtime::read_safetensors(dir / "model.safetensors");
  BOOST_TEST(same_tensors(model.tensors, make_checkpoint(2).params));
}

// A writer killed with SIGKILL after every step of the protocol: the reader sees
// the complete old checkpoint before the commit point and the complete new one
// from it on, never an error or a mix; the next write recovers and succeeds.
BOOST_AUTO_TEST_CASE(killed_writer_never_damages_the_last_checkpoint) {
  test::temp_dir tmp;
  const auto steps = write_steps(tmp / "probe");
  const auto commit = std::find(steps.begin(), steps.end(), "commit") - steps.begin();
  BOOST_TEST_REQUIRE(static_cast<std::size_t>(commit) < steps.size());
  BOOST_TEST(commit == 6);         // six files in .incoming first
  BOOST_TEST(steps.size() == 13u); // then six moves into DIR
  const auto old_ck = make_checkpoint(1);
  const auto new_ck = make_checkpoint(2);
  const auto next_ck = make_checkpoint(3);
  for (std::size_t k = 0; k < steps.size(); ++k) {
    BOOST_TEST_CONTEXT("killed after step " << k << " (" << steps[k] << ")") {
      const auto dir = tmp / ("ck" + std::to_string(k));
      runtime::write_checkpoint(dir, old_ck);
      BOOST_TEST_REQUIRE(crash_write(dir, new_ck, k));
      const bool committed = static_cast<std::ptrdiff_t>(k) >= commit;
      // The crash left the journal state the step names.
      BOOST_TEST(fs::exists(dir / ".incoming") == !committed);
      BOOST_TEST(fs::exists(dir / ".committed") == committed);
      checkpoint got;
      BOOST_CHECK_NO_THROW(got = runtime::read_checkpoint(dir));
      BOOST_TEST(same(got, committed ? new_ck : old_ck));
      // The next writer, itself killed at its first step, has already rolled a
      // pending commit forward: DIR alone holds the last checkpoint.
      BOOST_TEST_REQUIRE(crash_write(dir, next_ck, 0));
      BOOST_TEST(!fs::exists(dir / ".committed"));
      BOOST_CHECK_NO_THROW(got = runtime::read_checkpoint(dir));
      BOOST_TEST(same(got, committed ? new_ck : old_ck));
      BOOST_CHECK_NO_THROW(runtime::write_checkpoint(dir, next_ck));
      BOOST_CHECK_NO_THROW(got = runtime::read_checkpoint(dir));
      BOOST_TEST(same(got, next_ck));
      BOOST_TEST(!fs::exists(dir / ".incoming"));
      BOOST_TEST(!fs::exists(dir / ".committed"));
    }
  }
}

// A second writer of the same directory waits for the first to finish (the
// lock on DIR/.lock), so their files never interleave and the later one wins.
BOOST_AUTO_TEST_CASE(concurrent_writers_are_serialized) {
  test::temp_dir tmp;
  const auto dir = tmp / "ck";
  std::atomic<bool> second_done{false};
  std::atomic<bool> second_failed{false};
  bool done_while_first_held_lock = true;
  std::thread second;
  runtime::checkpoint_write_hooks hooks{[&](std::string_view step) {
    if (step != "incoming/model.safetensors")
      return;
    second = std::thread{[&] {
      try {
        runtime::write_checkpoint(dir, make_checkpoint(2));
      } catch (const std::exception& e) {
        BOOST_TEST_MESSAGE("second writer: " << e.what());
        second_failed = true;
      }
      second_done = true;
    }};
    // Long enough for an unserialized second write to finish.
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    done_while_first_held_lock = second_done;
  }};
  bool first_failed = false;
  try {
    runtime::write_checkpoint(dir, make_checkpoint(1), hooks);
  } catch (const std::exception& e) {
    BOOST_TEST_MESSAGE("first writer: " << e.what());
    first_failed = true;
  }
  BOOST_TEST_REQUIRE(second.joinable());
  second.join();
  BOOST_TEST(!first_failed);
  BOOST_TEST(!second_failed);
  BOOST_TEST(!done_while_first_held_lock);
  BOOST_TEST(same(runtime::read_checkpoint(dir), make_checkpoint(2)));
}

// A reader that comes while a writer moves files waits for it (shared lock on
// DIR/.lock) and then reads the new checkpoint.
BOOST_AUTO_TEST_CASE(reader_waits_for_a_writer) {
  test::temp_dir tmp;
  const auto dir = tmp / "ck";
  runtime::write_checkpoint(dir, make_checkpoint(1));
  std::atomic<bool> read_done{false};
  bool done_while_writer_held_lock = true;
  checkpoint got;
  std::thread reader;
  runtime::checkpoint_write_hooks hooks{[&](std::string_view step) {
    if (step != "moved/model.safetensors")
      return;
    reader = std::thread{[&] {
      got = runtime::read_checkpoint(dir);
      read_done = true;
    }};
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    done_while_writer_held_lock = read_done;
  }};
  runtime::write_checkpoint(dir, make_checkpoint(2), hooks);
  BOOST_TEST_REQUIRE(reader.joinable());
  reader.join();
  BOOST_TEST(!done_while_writer_held_lock);
  BOOST_TEST(same(got, make_checkpoint(2)));
}
