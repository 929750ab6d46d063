// `bench allreduce`'s peers: bench/peers troupe_peer_gloo (N processes,
// file-store rendezvous) and troupe_peer_mpi under mpirun, on the same sizes.

#include <chrono>
#include <memory>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "apps/troupe/bench/bench_allreduce_runs.hpp"
#include "apps/troupe/line_process.hpp"

namespace troupe::apps::allreduce_bench {

namespace fs = std::filesystem;
namespace rt = troupe::runtime;
namespace coll = troupe::actors::collectives;
using namespace std::chrono_literals;

namespace {

/// "--sizes b:iters,..." as the peers take it.
std::string peer_sizes(const std::vector<std::size_t>& sizes) {
  std::string s;
  for (auto b : sizes) {
    if (!s.empty())
      s += ',';
    s += std::to_string(b);
    s += ':';
    s += std::to_string(iterations_for(b));
  }
  return s;
}

/// Reads the peer's JSON lines (rank 0 prints one per size).
std::vector<std::vector<double>> read_peer_rows(line_process& p,
                                                const std::vector<std::size_t>& sizes,
                                                std::chrono::milliseconds limit) {
  std::vector<std::vector<double>> out;
  while (out.size() < sizes.size()) {
    auto l = p.read_line(limit);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(l);
    } catch (const nlohmann::json::exception&) {
      continue; // the peer's own chatter
    }
    if (!j.contains("bytes"))
      continue;
    if (j.at("bytes").get<std::size_t>() != sizes[out.size()])
      throw std::runtime_error("peer reported size " + j.at("bytes").dump() + ", expected " +
                               std::to_string(sizes[out.size()]));
    if (!j.value("ok", false))
      throw std::runtime_error("peer's all-reduce result was wrong at " + j.at("bytes").dump());
    out.push_back(j.at("seconds_per_op").get<std::vector<double>>());
  }
  return out;
}

std::chrono::milliseconds peer_limit(const allreduce_flags& f) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(op_timeout *
                                                               (f.warmup + f.reps * 201));
}

} // namespace

std::vector<std::vector<double>> bench_gloo(const allreduce_flags& f,
                                            const std::vector<std::size_t>& sizes,
                                            const fs::path& exe, const fs::path& dir, int turn) {
  auto store = dir / ("gloo-store-" + std::to_string(turn)); // a fresh rendezvous each time
  fs::create_directories(store);
  std::vector<std::unique_ptr<line_process>> procs;
  for (int r = 0; r < f.ranks; ++r)
    procs.push_back(std::make_unique<line_process>(
        std::vector<std::string>{exe.string(), "--rank", std::to_string(r), "--size",
                                 std::to_string(f.ranks), "--store", store.string(), "--sizes",
                                 peer_sizes(sizes), "--warmup", std::to_string(f.warmup), "--reps",
                                 std::to_string(f.reps)},
        dir / ("gloo-" + std::to_string(r) + ".log")));
  auto rows = read_peer_rows(*procs.front(), sizes, peer_limit(f));
  for (auto& p : procs)
    if (int s = p->finish(10s); s != 0)
      throw std::runtime_error("gloo peer exited with status " + std::to_string(s) + ": " +
                               p->log_tail());
  return rows;
}

std::vector<std::string> mpirun_command(const fs::path& mpirun, const fs::path& exe, int n) {
  return {mpirun.string(),
          "--allow-run-as-root",
          "--oversubscribe",
          "-np",
          std::to_string(n),
          "--mca",
          "pml",
          "ob1",
          "--mca",
          "btl",
          "tcp,self",
          "--mca",
          "btl_tcp_if_include",
          "lo",
          exe.string()};
}

std::vector<std::vector<double>> bench_mpi(const allreduce_flags& f,
                                           const std::vector<std::size_t>& sizes,
                                           const fs::path& mpirun, const fs::path& exe,
                                           const fs::path& dir) {
  auto argv = mpirun_command(mpirun, exe, f.ranks);
  argv.insert(argv.end(), {"--sizes", peer_sizes(sizes), "--warmup", std::to_string(f.warmup),
                           "--reps", std::to_string(f.reps)});
  line_process p{argv, dir / "mpi.log"};
  auto rows = read_peer_rows(p, sizes, peer_limit(f));
  if (int s = p.finish(10s); s != 0)
    throw std::runtime_error("mpirun exited with status " + std::to_string(s) + ": " +
                             p.log_tail());
  return rows;
}

} // namespace troupe::apps::allreduce_bench
