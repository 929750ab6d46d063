// `troupe bench ps-rank`, one shard or worker process of `bench ps`, and the
// driver's side that starts, wires and drives those processes.

#include "apps/troupe/bench/bench_ps_rank.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <future>
#include <iostream>
#include <optional>
#include <stdexcept>
#include <tuple>

#include <caf/all.hpp>
#include <caf/io/all.hpp>

#include "apps/troupe/bench/bench_ps_params.hpp"
#include "apps/troupe/bench/bench_util.hpp"
#include "apps/troupe/commands.hpp"
#include "apps/troupe/line_process.hpp"
#include "actors/protocol/messages.hpp"
#include "actors/protocol/system_config.hpp"
#include "runtime/net/transport/auth.hpp"

namespace troupe::apps::ps_bench {

namespace fs = std::filesystem;
namespace rt = troupe::runtime;
using namespace std::chrono_literals;

namespace {

/// The directory a rank publishes: its courier's name, its main actor (the
/// ps shard, or the worker) and its courier's endpoint. A worker introduces
/// itself to every shard with (psb_hello_atom, ...), so that the shard's
/// courier can send it parameters over the data plane.
caf::behavior directory(caf::event_based_actor*, std::shared_ptr<rt::transport::courier> c,
                        caf::actor main) {
  return {
      [c, main](psb_get_atom) { return std::make_tuple(c->name(), main, c->endpoint()); },
      [c](psb_hello_atom, std::string& name, std::int32_t port, caf::actor& endpoint) -> bool {
        c->add_peer(name, "127.0.0.1", static_cast<std::uint16_t>(port), endpoint,
                    [](std::optional<std::string>) {});
        return true;
      },
  };
}

/// Shard `index` at "caf:data" on 127.0.0.1: asks its directory for its
/// actors, introduces this courier to it and starts this courier's data
/// plane to it (`up` is told when that is up). Returns the shard actor.
caf::actor wire_shard(caf::actor_system& sys, rt::transport::courier& courier, std::size_t index,
                      const std::string& address,
                      std::function<void(std::optional<std::string>)> up) {
  unsigned cp = 0, dp = 0;
  if (std::sscanf(address.c_str(), "%u:%u", &cp, &dp) != 2)
    throw std::runtime_error("bad shard address '" + address + "'");
  auto d = sys.middleman().remote_actor("127.0.0.1", static_cast<std::uint16_t>(cp));
  if (!d)
    throw std::runtime_error("cannot reach shard " + std::to_string(index) + ": " +
                             sys.render(d.error()));
  caf::scoped_actor self{sys};
  std::string err, name;
  caf::actor shard, endpoint;
  self->request(*d, 30s, psb_get_atom::value)
      .receive(
          [&](std::string& n, caf::actor& m, caf::actor& ep) {
            name = std::move(n);
            shard = std::move(m);
            endpoint = std::move(ep);
          },
          [&](caf::error& e) { err = sys.render(e); });
  if (err.empty())
    self->request(*d, 30s, psb_hello_atom::value, courier.name(),
                  static_cast<std::int32_t>(courier.port()), courier.endpoint())
        .receive([](bool) {}, [&](caf::error& e) { err = sys.render(e); });
  if (!err.empty() || !shard)
    throw std::runtime_error("shard " + std::to_string(index) + ": " +
                             (err.empty() ? std::string{"no ps shard actor"} : err));
  courier.add_peer(name, "127.0.0.1", static_cast<std::uint16_t>(dp), endpoint, std::move(up));
  return shard;
}

/// A worker's SHARDS line: wires every shard (their data planes up) and
/// spawns this process's worker actor.
caf::actor wire_worker(caf::actor_system& sys, const rank_flags& f,
                       const std::shared_ptr<rt::transport::courier>& courier,
                       const std::vector<std::string>& w) {
  if (w.size() != static_cast<std::size_t>(f.shards) + 1)
    throw std::runtime_error("SHARDS: " + std::to_string(w.size() - 1) + " addresses for " +
                             std::to_string(f.shards) + " shards");
  std::vector<caf::actor> shards;
  std::vector<std::future<std::optional<std::string>>> ups;
  for (std::size_t i = 1; i < w.size(); ++i) {
    auto done = std::make_shared<std::promise<std::optional<std::string>>>();
    ups.push_back(done->get_future());
    shards.push_back(wire_shard(sys, *courier, i - 1, w[i], [done](std::optional<std::string> e) {
      done->set_value(std::move(e));
    }));
  }
  for (auto& u : ups) {
    if (u.wait_for(60s) != std::future_status::ready)
      throw std::runtime_error("data plane to a shard not up within 60 s");
    if (auto e = u.get())
      throw std::runtime_error("data plane to a shard: " + *e);
  }
  const auto spec = parameter_model(f.model, f.mb);
  return sys.spawn(worker, f.index, make_assignment(spec, f.shards, f.split_mb), std::move(shards),
                   courier, worker_parameters(spec), f.lr);
}

} // namespace

/// `troupe bench ps-rank`: one shard or worker process of `bench ps`. Line
/// protocol on stdin/stdout:
///   -> READY <caf port> <data port>
/// a worker:
///   <- SHARDS caf:data ... (every shard, in shard order, on 127.0.0.1)
///   -> WIRED
///   <- RUN <rounds>        -> TIME <seconds>
/// a shard:
///   <- STATS               -> STATS <bytes in> <bytes out> <apply seconds>
/// Anything wrong: ERROR <text>. End of input ends the process.
int run_rank(const rank_flags& f) {
  troupe::actors::system_config cfg{1};
  cfg.load<caf::io::middleman>();
  caf::actor_system sys{cfg};
  const auto spec = parameter_model(f.model, f.mb);
  const auto a = make_assignment(spec, f.shards, f.split_mb);
  rt::transport::courier_options o;
  o.name = "ps-bench-" + f.role + "-" + std::to_string(f.index);
  o.key = rt::transport::load_key(f.key_file);
  auto courier = rt::transport::courier::start(sys, o, "127.0.0.1");
  caf::actor main;
  if (f.role == "shard")
    main = actors::spawn_ps_shard(sys, shard_config(spec, a, f.index, f.workers, f.lr, courier));
  auto dir = sys.spawn(directory, courier, main);
  auto port = sys.middleman().publish(dir, 0, "127.0.0.1", true);
  if (!port)
    throw std::runtime_error("cannot publish the directory: " + sys.render(port.error()));
  std::printf("READY %u %u\n", static_cast<unsigned>(*port),
              static_cast<unsigned>(courier->port()));
  std::fflush(stdout);

  std::vector<caf::actor> workers; // this process's worker, once wired
  std::string line;
  while (std::getline(std::cin, line)) {
    auto w = words(line);
    try {
      if (w.empty())
        continue;
      if (w[0] == "SHARDS" && f.role == "worker") {
        workers.push_back(wire_worker(sys, f, courier, w));
        std::printf("WIRED\n");
      } else if (w[0] == "RUN" && w.size() == 2 && !workers.empty()) {
        auto s = run_workers(sys, workers, std::stoi(w[1]));
        std::printf("TIME %.9g\n", s);
      } else if (w[0] == "STATS" && f.role == "shard") {
        auto t = shard_stats(sys, {main});
        std::printf("STATS %.17g %.17g %.9g\n", t.bytes_in, t.bytes_out, t.apply_seconds);
      } else {
        throw std::runtime_error("unexpected '" + line + "'");
      }
    } catch (const std::exception& e) {
      std::printf("ERROR %s\n", e.what());
    }
    std::fflush(stdout);
  }
  courier->stop();
  std::fflush(nullptr);
  std::_Exit(exit_ok); // a benchmark rank needs no orderly CAF teardown
}

namespace {

/// The driver's handles on the rank processes of one measurement.
struct rank_processes {
  std::vector<std::unique_ptr<line_process>> shards, workers;

  /// `rounds` rounds on every worker process; the slowest one's seconds.
  double run(int rounds) {
    for (auto& p : workers)
      p->send_line("RUN " + std::to_string(rounds));
    double worst = 0;
    for (auto& p : workers) {
      auto l = p->read_line(
          std::chrono::duration_cast<std::chrono::milliseconds>(round_timeout * (rounds + 1)));
      auto w = words(l);
      if (w.size() != 2 || w[0] != "TIME")
        throw std::runtime_error("worker process: " + l);
      worst = std::max(worst, std::stod(w[1]));
    }
    return worst;
  }

  /// Every shard process's counters, summed.
  shard_totals stats() {
    shard_totals t;
    for (auto& p : shards) {
      p->send_line("STATS");
      auto l = p->read_line(30s);
      auto w = words(l);
      if (w.size() != 4 || w[0] != "STATS")
        throw std::runtime_error("shard process: " + l);
      t.bytes_in += std::stod(w[1]);
      t.bytes_out += std::stod(w[2]);
      t.apply_seconds += std::stod(w[3]);
    }
    return t;
  }
};

/// Starts one `bench ps-rank` process of `role`.
std::unique_ptr<line_process> start_rank(const ps_flags& f, int s, const fs::path& key_file,
                                         const std::string& role, int i, const fs::path& log) {
  return std::make_unique<line_process>(std::vector<std::string>{self_exe().string(),
                                                                 "--log-level",
                                                                 "error",
                                                                 "bench",
                                                                 "ps-rank",
                                                                 "--role",
                                                                 role,
                                                                 "--index",
                                                                 std::to_string(i),
                                                                 "--shards",
                                                                 std::to_string(s),
                                                                 "--workers",
                                                                 std::to_string(f.workers),
                                                                 "--key-file",
                                                                 key_file.string(),
                                                                 "--model",
                                                                 f.model,
                                                                 "--mb",
                                                                 number(f.mb),
                                                                 "--split-mb",
                                                                 number(f.split_mb),
                                                                 "--lr",
                                                                 number(f.lr)},
                                        log);
}

/// "caf:data" of a process that reported READY.
std::string await_ready(line_process& p) {
  auto w = words(p.read_line(60s));
  if (w.size() != 3 || w[0] != "READY")
    throw std::runtime_error("a ps-rank process did not start: " + p.log_tail());
  return w[1] + ":" + w[2];
}

} // namespace

pushpull_run pushpull_processes(const ps_flags& f, int s, const fs::path& dir, int index) {
  auto key_file = dir / "cluster.key";
  if (!fs::exists(key_file))
    rt::transport::save_key(key_file, rt::transport::generate_key());
  auto log = [&](const std::string& role, int i) {
    return dir / (role + "-" + std::to_string(i) + "-run" + std::to_string(index) + ".log");
  };
  rank_processes procs;
  for (int i = 0; i < s; ++i)
    procs.shards.push_back(start_rank(f, s, key_file, "shard", i, log("shard", i)));
  for (int i = 0; i < f.workers; ++i)
    procs.workers.push_back(start_rank(f, s, key_file, "worker", i, log("worker", i)));
  std::string addresses = "SHARDS";
  for (auto& p : procs.shards)
    addresses += " " + await_ready(*p);
  for (auto& p : procs.workers)
    await_ready(*p);
  for (auto& p : procs.workers)
    p->send_line(addresses);
  for (auto& p : procs.workers)
    if (auto l = p->read_line(120s); l != "WIRED")
      throw std::runtime_error("a worker process could not connect: " + l);
  if (f.round_warmup > 0)
    procs.run(f.round_warmup);
  pushpull_run r;
  auto before = procs.stats();
  r.round_seconds = procs.run(f.rounds) / f.rounds;
  r.shards = procs.stats() - before;
  for (auto& p : procs.workers)
    p->finish();
  for (auto& p : procs.shards)
    p->finish();
  return r;
}

} // namespace troupe::apps::ps_bench
