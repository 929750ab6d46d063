#pragma once

// Flags and output shared by the all-reduce peers (gloo_allreduce.cpp,
// mpi_allreduce.cpp) that `troupe bench allreduce` runs:
//   --sizes B:I,...  buffer bytes and ops per timed round
//   --warmup W --reps R [--rank r --size n --store DIR (gloo)]
// Rank 0 prints one JSON line per size,
//   {"bytes":B,"iters":I,"ok":true,"seconds_per_op":[slowest rank's, per round]}
// Inputs are constant (rank r holds r + 1) so the sum n(n + 1)/2 is exact and
// each result is spot-checked; the same as troupe's side of the benchmark.

#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

namespace troupe::bench {

struct peer_size {
  std::size_t bytes = 0;
  int iters = 1;
};

struct peer_args {
  std::vector<peer_size> sizes;
  int warmup = 3;
  int reps = 10;
  int rank = -1;
  int size = -1;
  std::string store;
};

/// Throws std::invalid_argument on anything unexpected.
inline peer_args parse_peer_args(int argc, char** argv) {
  peer_args a;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    if (i + 1 >= argc)
      throw std::invalid_argument("missing value for " + k);
    std::string v = argv[++i];
    if (k == "--sizes") {
      std::size_t pos = 0;
      while (pos < v.size()) {
        auto comma = v.find(',', pos);
        auto item = v.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
        auto colon = item.find(':');
        if (colon == std::string::npos)
          throw std::invalid_argument("bad size '" + item + "' (want BYTES:ITERS)");
        peer_size s{std::stoull(item.substr(0, colon)), std::stoi(item.substr(colon + 1))};
        if (s.bytes == 0 || s.bytes % sizeof(float) != 0 || s.iters < 1)
          throw std::invalid_argument("bad size '" + item + "'");
        a.sizes.push_back(s);
        pos = comma == std::string::npos ? v.size() : comma + 1;
      }
    } else if (k == "--warmup") {
      a.warmup = std::stoi(v);
    } else if (k == "--reps") {
      a.reps = std::stoi(v);
    } else if (k == "--rank") {
      a.rank = std::stoi(v);
    } else if (k == "--size") {
      a.size = std::stoi(v);
    } else if (k == "--store") {
      a.store = v;
    } else {
      throw std::invalid_argument("unknown flag " + k);
    }
  }
  if (a.sizes.empty() || a.reps < 1 || a.warmup < 0)
    throw std::invalid_argument("need --sizes, --reps >= 1 and --warmup >= 0");
  return a;
}

/// The constant input of `rank`, and whether `out` holds the exact sum over n ranks.
inline std::vector<float> peer_input(std::size_t elements, int rank) {
  return std::vector<float>(elements, static_cast<float>(rank + 1));
}
inline bool peer_result_ok(const std::vector<float>& out, int n) {
  const float expect = static_cast<float>(n) * static_cast<float>(n + 1) / 2.f;
  auto e = out.size();
  return e > 0 && out[0] == expect && out[e / 2] == expect && out[e - 1] == expect;
}

inline void print_peer_row(const peer_size& s, bool ok, const std::vector<double>& per_op) {
  std::printf("{\"bytes\":%zu,\"iters\":%d,\"ok\":%s,\"seconds_per_op\":[", s.bytes, s.iters,
              ok ? "true" : "false");
  for (std::size_t i = 0; i < per_op.size(); ++i)
    std::printf("%s%.9g", i ? "," : "", per_op[i]);
  std::printf("]}\n");
  std::fflush(stdout);
}

} // namespace troupe::bench
