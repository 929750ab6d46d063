#pragma once

// `troupe bench ps`'s flags (the driver's and a rank process's) and the list
// flags' parsing. Change here when `bench ps` gains a flag.

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace troupe::apps::ps_bench {

using namespace std::chrono_literals;

/// A round that takes longer means something is stuck: give up.
constexpr auto round_timeout = 120s;

struct ps_flags {
  std::string parts = "pushpull,modes,allreduce";
  int workers = 2;
  int repeats = 3;
  std::string json;
  // push+pull
  std::string shards = "1,2,4";
  std::string model = "mlp";
  double mb = 0; ///< > 0: a synthetic parameter set of this many MiB instead of --model
  double split_mb = 1;
  int rounds = 50;
  int round_warmup = 5;
  bool in_process_only = false;
  bool processes_only = false;
  // training
  int ps = 1;
  std::string modes = "sync,async,ssp";
  int staleness = 2;
  int slow_replica = 1;
  double slow_factor = 2;
  std::string compare_ps = "1,2";
  std::int64_t batch = 128;
  std::int64_t steps = 200;
  std::int64_t warmup = 20;
  float lr = 0.1f;
  int threads = 0; ///< in all; 0: one per worker (and per ps device slot: see the plan)
  std::string data_dir = "data/mnist";
};

struct rank_flags {
  std::string role;
  int index = 0;
  int shards = 1;
  int workers = 1;
  std::string key_file;
  std::string model = "mlp";
  double mb = 0;
  double split_mb = 1;
  float lr = 0.01f;
};

/// "1,2,4" -> {1, 2, 4}, each in [lo, hi]; throws input_error naming `flag`.
std::vector<int> parse_int_list(const std::string& flag, const std::string& list, int lo, int hi);

/// "a,b" -> {"a", "b"}, each one of `known`; throws input_error naming `flag`.
std::vector<std::string> parse_word_list(const std::string& flag, const std::string& list,
                                         const std::vector<std::string>& known);

bool has(const std::vector<std::string>& v, const std::string& x);

} // namespace troupe::apps::ps_bench
