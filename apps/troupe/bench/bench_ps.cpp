// `troupe bench ps`: the parameter servers, three ways.
//
// 1. push+pull ("pushpull"): W small worker actors, each with a ps_client
//    holding a model-sized parameter set (a zoo model's parameters, or with
//    --mb a synthetic set: one large dense layer that the assignment splits
//    across the shards and two smaller ones), against S ps_shard actors (sync
//    mode, plain SGD, so an update costs one pass over the parameters). A
//    round is: every worker pushes its gradients of step s, pulls the
//    parameters for s + 1 and writes them into its parameters; a worker starts
//    its next round when its pull is in. Payload per round = W x (pushed +
//    pulled bytes) = 2 W x model bytes; GB/s = payload per round / seconds per
//    round (the slowest worker's), and per shard / S. Measured
//      in process:   shards and workers in one actor system (tensors move by
//                    reference: only the packing, summing, updating and
//                    unpacking copies remain);
//      processes:    one process per shard and per worker (this executable
//                    re-run as the hidden `bench ps-rank`), each with its own
//                    actor system and courier over 127.0.0.1: pushes and
//                    pulls above 64 KiB travel over the data plane.
//    The machine's memcpy bandwidth (64 MiB, one thread) is measured in the
//    same run, so GB/s can be read against it.
// 2. ps modes ("modes"): training samples/s of the zoo mlp on MNIST through
//    actors::run_training (the code path of `troupe train`) with W workers
//    and --ps S shards in sync, async and ssp (--staleness K) mode, once with
//    every worker at full speed and once with worker --slow-replica's kernels
//    --slow-factor times slower; the ratio to sync, each run's largest
//    staleness (the shards' max_gap) and its mean training loss.
// 3. sync PS against all-reduce ("allreduce"): W workers with --compare-ps
//    shard counts (sync) against --dp W all-reduce data parallelism.
// Every part alternates its configurations (A B C A B C ..., the order
// rotated per repeat) over --repeats and reports medians, min and max.

#include "apps/troupe/bench/bench_ps.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <future>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <nlohmann/json.hpp>

#include "actors/cluster/job.hpp"
#include "actors/plan/ps_assignment.hpp"
#include "actors/ps/ps_client.hpp"
#include "actors/ps/ps_shard.hpp"
#include "actors/plan/train_options.hpp"
#include "apps/troupe/bench/bench_util.hpp"
#include "apps/troupe/line_process.hpp"
#include "models/layers/model_spec.hpp"
#include "models/zoo.hpp"
#include "runtime/error.hpp"
#include "runtime/net/messages.hpp"
#include "runtime/net/system_config.hpp"
#include "runtime/io/temp_dir.hpp"
#include "runtime/tensor.hpp"
#include "runtime/net/transport/auth.hpp"
#include "runtime/net/transport/courier.hpp"

namespace troupe::apps {

namespace {

namespace fs = std::filesystem;
namespace rt = troupe::runtime;
using clock_type = std::chrono::steady_clock;
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
std::vector<int> parse_int_list(const std::string& flag, const std::string& list, int lo, int hi) {
  std::vector<int> out;
  std::stringstream in{list};
  std::string item;
  while (std::getline(in, item, ',')) {
    std::size_t used = 0;
    int v = 0;
    try {
      v = std::stoi(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (item.empty() || used != item.size() || v < lo || v > hi)
      throw rt::input_error(flag + ": '" + item + "' is not a number in [" + std::to_string(lo) +
                            ", " + std::to_string(hi) + "] (expected a list like 1,2,4)");
    if (std::find(out.begin(), out.end(), v) == out.end())
      out.push_back(v);
  }
  if (out.empty())
    throw rt::input_error(flag + ": empty list");
  return out;
}

/// "a,b" -> {"a", "b"}, each one of `known`; throws input_error naming `flag`.
std::vector<std::string> parse_word_list(const std::string& flag, const std::string& list,
                                         const std::vector<std::string>& known) {
  std::vector<std::string> out;
  std::stringstream in{list};
  std::string item;
  while (std::getline(in, item, ',')) {
    if (std::find(known.begin(), known.end(), item) == known.end()) {
      std::string k;
      for (const auto& x : known)
        k += (k.empty() ? "" : ", ") + x;
      throw rt::input_error(flag + ": unknown '" + item + "' (known: " + k + ")");
    }
    if (std::find(out.begin(), out.end(), item) == out.end())
      out.push_back(item);
  }
  if (out.empty())
    throw rt::input_error(flag + ": empty list");
  return out;
}

bool has(const std::vector<std::string>& v, const std::string& x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

std::string number(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", x);
  return buf;
}

/// memcpy GB/s (bytes copied / s) over 64 MiB buffers on this thread, median of 7.
double memcpy_gbps() {
  const std::size_t bytes = std::size_t{64} << 20;
  std::vector<char> src(bytes, 1), dst(bytes, 2);
  std::vector<double> rates;
  for (int r = 0; r < 8; ++r) {
    auto t0 = clock_type::now();
    std::memcpy(dst.data(), src.data(), bytes);
    double s = std::chrono::duration<double>(clock_type::now() - t0).count();
    if (r > 0) // the first touches the pages
      rates.push_back(static_cast<double>(bytes) / s / 1e9);
  }
  volatile char sink = dst[bytes / 2];
  (void)sink;
  return summary::of(rates).median;
}

// ------------------------------------------------------------------ parameter set

/// The parameters pushed and pulled: a zoo model's, or (mb > 0) a synthetic
/// model of about `mb` MiB: dense 1024 -> H (the large tensor, split across
/// the shards), dense H -> 256, dense 256 -> 10.
models::model_spec parameter_model(const std::string& model, double mb) {
  if (mb <= 0) {
    try {
      return models::zoo_model(model);
    } catch (const std::invalid_argument& e) {
      throw rt::input_error(std::string{"--model: "} + e.what());
    }
  }
  const double elements = mb * 1048576.0 / 4.0;
  const auto h = std::max<std::int64_t>(1, std::llround(elements / (1024 + 1 + 256)));
  return models::model_builder("synthetic")
      .input({1024})
      .dense(1024, h)
      .relu()
      .dense(h, 256)
      .relu()
      .dense(256, 10)
      .build();
}

/// One worker's copy of the model's parameters with a constant gradient.
std::vector<models::parameter> worker_parameters(const models::model_spec& spec) {
  std::vector<models::parameter> out;
  for (auto& l : models::instantiate(spec, 0, spec.layers.size(), 0))
    for (auto& p : l->parameters()) {
      models::parameter q;
      q.name = p.name;
      q.value = p.value;
      q.grad = rt::tensor::empty(rt::dtype::f32, p.value.shape());
      std::fill_n(q.grad.mutable_data<float>(), q.grad.numel(), 1e-6f);
      q.grad_fresh = false;
      out.push_back(std::move(q));
    }
  return out;
}

/// Every parameter on stage 0, spread over `shards` shards.
actors::ps_assignment make_assignment(const models::model_spec& spec, int shards, double split_mb) {
  std::vector<actors::ps_param_info> params;
  for (const auto& p : worker_parameters(spec))
    params.push_back({p.name, 0, p.value.numel()});
  return actors::assign_parameters(params, shards, static_cast<std::int64_t>(split_mb * 1048576.0));
}

std::uint64_t model_bytes(const actors::ps_assignment& a) {
  std::uint64_t b = 0;
  for (const auto& p : a.params)
    b += static_cast<std::uint64_t>(p.numel) * sizeof(float);
  return b;
}

actors::ps_shard_config shard_config(const models::model_spec& spec, const actors::ps_assignment& a,
                                     int shard, int workers, float lr,
                                     std::shared_ptr<rt::transport::courier> courier) {
  actors::ps_shard_config c;
  c.shard = shard;
  c.assignment = a;
  c.workers = workers;
  c.mode = actors::ps_mode::sync;
  c.optimizer = {{"type", "sgd"}, {"lr", lr}, {"momentum", 0.0}, {"weight_decay", 0.0}};
  c.model = spec;
  c.courier = std::move(courier);
  return c;
}

// ------------------------------------------------------------------ worker actor

/// (psb_run_atom, int32 rounds) -> double seconds the rounds took.
using psb_run_atom = caf::atom_constant<caf::atom("psbrun")>;
/// (psb_get_atom) -> (string courier name, actor main, actor courier endpoint)
using psb_get_atom = caf::atom_constant<caf::atom("psbget")>;
/// (psb_hello_atom, string courier name, int32 data port, actor endpoint) -> bool
using psb_hello_atom = caf::atom_constant<caf::atom("psbhello")>;

/// A worker of the push+pull benchmark: per round it pushes its gradients of
/// step s through its ps_client, pulls the parameters for s + 1 and applies
/// them. Answers (psb_run_atom, rounds) once it has done them.
struct worker_state {
  actors::ps_client client;
  std::vector<models::parameter> params;
  std::vector<models::parameter*> ptrs;
  std::int64_t next_step = 0; ///< the step it pushes next
  std::int32_t left = 0;
  float lr = 0;
  float scale = 1;
  clock_type::time_point t0;
  caf::response_promise rp;
  bool failed = false;
  static inline const char* name = "ps_bench_worker";
};
using worker_actor = caf::stateful_actor<worker_state>;

void start_round(worker_actor* self) {
  auto& st = self->state;
  st.client.push(st.next_step, st.ptrs, st.lr, st.scale);
  st.client.request(st.next_step + 1);
  ++st.next_step;
}

caf::behavior worker(worker_actor* self, int index, actors::ps_assignment a,
                     std::vector<caf::actor> shards,
                     std::shared_ptr<rt::transport::courier> courier,
                     std::vector<models::parameter> params, float lr) {
  auto& st = self->state;
  st.params = std::move(params);
  for (auto& p : st.params)
    st.ptrs.push_back(&p);
  st.lr = lr; // scale stays 1, as a layer shard pushes in sync mode (the shard sums)
  // A shard that fails ends the measurement (rather than leaving it waiting).
  for (const auto& s : shards)
    self->monitor(s);
  st.client = actors::ps_client(0, index, std::move(a), std::move(shards), std::move(courier),
                                caf::actor_cast<caf::actor>(self));
  auto fail = [self](const std::string& what) {
    auto& s = self->state;
    if (!s.failed && s.rp.pending())
      s.rp.deliver(caf::make_error(caf::sec::runtime_error, what));
    s.failed = true;
  };
  self->set_down_handler([self, fail](caf::down_msg& d) {
    fail("a ps shard ended: " + self->system().render(d.reason));
  });
  return {
      [self](psb_run_atom, std::int32_t rounds) -> caf::result<double> {
        auto& s = self->state;
        if (s.failed || rounds < 1)
          return caf::make_error(caf::sec::runtime_error, "worker failed before");
        s.left = rounds;
        s.t0 = clock_type::now();
        s.rp = self->make_response_promise();
        try {
          start_round(self);
        } catch (const std::exception& e) {
          s.failed = true;
          return caf::make_error(caf::sec::runtime_error, e.what());
        }
        return s.rp;
      },
      [self, fail](rt::ps_msg& m) {
        auto& s = self->state;
        if (s.failed)
          return;
        try {
          if (!s.client.on_params(std::move(m)))
            return;
          s.client.apply(s.ptrs);
          if (--s.left > 0)
            start_round(self);
          else
            s.rp.deliver(std::chrono::duration<double>(clock_type::now() - s.t0).count());
        } catch (const std::exception& e) {
          fail(e.what());
        }
      },
  };
}

/// Runs `rounds` rounds on every worker at once; the slowest one's seconds.
double run_workers(caf::actor_system& sys, const std::vector<caf::actor>& workers, int rounds) {
  caf::scoped_actor self{sys};
  double worst = 0;
  std::string err;
  // Every request goes out before any answer is awaited: in sync mode no
  // worker finishes a round before all have pushed.
  using handle =
      decltype(self->request(workers.front(), round_timeout, psb_run_atom::value, std::int32_t{1}));
  std::vector<handle> pending;
  for (const auto& w : workers)
    pending.push_back(self->request(w, round_timeout * rounds, psb_run_atom::value,
                                    static_cast<std::int32_t>(rounds)));
  for (auto& h : pending)
    h.receive([&](double s) { worst = std::max(worst, s); },
              [&](caf::error& e) { err = sys.render(e); });
  if (!err.empty())
    throw std::runtime_error("push+pull failed: " + err);
  return worst;
}

/// The shards' counters summed: bytes in and out, update seconds.
struct shard_totals {
  double bytes_in = 0, bytes_out = 0, apply_seconds = 0;
  shard_totals operator-(const shard_totals& o) const {
    return {bytes_in - o.bytes_in, bytes_out - o.bytes_out, apply_seconds - o.apply_seconds};
  }
};

shard_totals shard_stats(caf::actor_system& sys, const std::vector<caf::actor>& shards) {
  caf::scoped_actor self{sys};
  shard_totals t;
  std::string err;
  for (const auto& s : shards)
    self->request(s, 30s, rt::ps_stats_atom::value)
        .receive(
            [&](rt::ps_stats& x) {
              t.bytes_in += static_cast<double>(x.bytes_in);
              t.bytes_out += static_cast<double>(x.bytes_out);
              t.apply_seconds += x.apply_seconds;
            },
            [&](caf::error& e) { err = sys.render(e); });
  if (!err.empty())
    throw std::runtime_error("ps shard stats: " + err);
  return t;
}

/// One measurement: seconds per round of the timed rounds and the shards'
/// counters over them.
struct pushpull_run {
  double round_seconds = 0;
  shard_totals shards;
};

pushpull_run pushpull_in_process(caf::actor_system& sys, const ps_flags& f,
                                 const models::model_spec& spec, int s) {
  auto a = make_assignment(spec, s, f.split_mb);
  std::vector<caf::actor> shards, workers;
  for (int i = 0; i < s; ++i)
    shards.push_back(actors::spawn_ps_shard(sys, shard_config(spec, a, i, f.workers, f.lr, {})));
  auto params = worker_parameters(spec);
  for (int w = 0; w < f.workers; ++w)
    workers.push_back(
        sys.spawn(worker, w, a, shards, std::shared_ptr<rt::transport::courier>{}, params, f.lr));
  pushpull_run r;
  try {
    if (f.round_warmup > 0)
      run_workers(sys, workers, f.round_warmup);
    auto before = shard_stats(sys, shards);
    r.round_seconds = run_workers(sys, workers, f.rounds) / f.rounds;
    r.shards = shard_stats(sys, shards) - before;
  } catch (...) {
    for (auto& x : workers)
      caf::anon_send_exit(x, caf::exit_reason::user_shutdown);
    for (auto& x : shards)
      caf::anon_send_exit(x, caf::exit_reason::user_shutdown);
    throw;
  }
  for (auto& x : workers)
    caf::anon_send_exit(x, caf::exit_reason::user_shutdown);
  for (auto& x : shards)
    caf::anon_send_exit(x, caf::exit_reason::user_shutdown);
  return r;
}

// ------------------------------------------------------------------ rank processes

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
  rt::system_config cfg{1};
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
        if (w.size() != static_cast<std::size_t>(f.shards) + 1)
          throw std::runtime_error("SHARDS: " + std::to_string(w.size() - 1) + " addresses for " +
                                   std::to_string(f.shards) + " shards");
        caf::scoped_actor self{sys};
        std::vector<caf::actor> shards;
        std::vector<std::future<std::optional<std::string>>> ups;
        for (std::size_t i = 1; i < w.size(); ++i) {
          unsigned cp = 0, dp = 0;
          if (std::sscanf(w[i].c_str(), "%u:%u", &cp, &dp) != 2)
            throw std::runtime_error("bad shard address '" + w[i] + "'");
          auto d = sys.middleman().remote_actor("127.0.0.1", static_cast<std::uint16_t>(cp));
          if (!d)
            throw std::runtime_error("cannot reach shard " + std::to_string(i - 1) + ": " +
                                     sys.render(d.error()));
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
            self->request(*d, 30s, psb_hello_atom::value, courier->name(),
                          static_cast<std::int32_t>(courier->port()), courier->endpoint())
                .receive([](bool) {}, [&](caf::error& e) { err = sys.render(e); });
          if (!err.empty() || !shard)
            throw std::runtime_error("shard " + std::to_string(i - 1) + ": " +
                                     (err.empty() ? std::string{"no ps shard actor"} : err));
          auto done = std::make_shared<std::promise<std::optional<std::string>>>();
          ups.push_back(done->get_future());
          courier->add_peer(
              name, "127.0.0.1", static_cast<std::uint16_t>(dp), endpoint,
              [done](std::optional<std::string> e) { done->set_value(std::move(e)); });
          shards.push_back(std::move(shard));
        }
        for (auto& u : ups) {
          if (u.wait_for(60s) != std::future_status::ready)
            throw std::runtime_error("data plane to a shard not up within 60 s");
          if (auto e = u.get())
            throw std::runtime_error("data plane to a shard: " + *e);
        }
        workers.push_back(sys.spawn(worker, f.index, a, std::move(shards), courier,
                                    worker_parameters(spec), f.lr));
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

/// S shard processes and W worker processes, wired; one measurement.
pushpull_run pushpull_processes(const ps_flags& f, int s, const fs::path& dir, int index) {
  auto key_file = dir / "cluster.key";
  if (!fs::exists(key_file))
    rt::transport::save_key(key_file, rt::transport::generate_key());
  const auto exe = self_exe().string();
  auto start = [&](const std::string& role, int i) {
    return std::make_unique<line_process>(
        std::vector<std::string>{exe,
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
        dir / (role + "-" + std::to_string(i) + "-run" + std::to_string(index) + ".log"));
  };
  std::vector<std::unique_ptr<line_process>> shards, workers;
  for (int i = 0; i < s; ++i)
    shards.push_back(start("shard", i));
  for (int i = 0; i < f.workers; ++i)
    workers.push_back(start("worker", i));
  auto ready = [](line_process& p) {
    auto w = words(p.read_line(60s));
    if (w.size() != 3 || w[0] != "READY")
      throw std::runtime_error("a ps-rank process did not start: " + p.log_tail());
    return w[1] + ":" + w[2];
  };
  std::string addresses = "SHARDS";
  for (auto& p : shards)
    addresses += " " + ready(*p);
  for (auto& p : workers)
    ready(*p);
  for (auto& p : workers)
    p->send_line(addresses);
  for (auto& p : workers)
    if (auto l = p->read_line(120s); l != "WIRED")
      throw std::runtime_error("a worker process could not connect: " + l);
  auto run = [&](int rounds) {
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
  };
  auto stats = [&] {
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
  };
  if (f.round_warmup > 0)
    run(f.round_warmup);
  pushpull_run r;
  auto before = stats();
  r.round_seconds = run(f.rounds) / f.rounds;
  r.shards = stats() - before;
  for (auto& p : workers)
    p->finish();
  for (auto& p : shards)
    p->finish();
  return r;
}

// ------------------------------------------------------------------ push+pull

struct pushpull_config {
  std::string where; ///< "in process" or "processes"
  int shards = 1;
  std::vector<double> round_seconds, gbps, apply_ms_per_round;
  nlohmann::json runs = nlohmann::json::array();
};

nlohmann::json bench_pushpull(const ps_flags& f, caf::actor_system& sys, const fs::path& dir,
                              double memcpy_bw) {
  const auto spec = parameter_model(f.model, f.mb);
  const auto shard_counts = parse_int_list("--shards", f.shards, 1, 64);
  const auto bytes = model_bytes(make_assignment(spec, 1, f.split_mb));
  std::int64_t params = 0;
  for (const auto& p : make_assignment(spec, 1, f.split_mb).params)
    params += p.numel;
  const double payload = 2.0 * f.workers * static_cast<double>(bytes); // per round

  std::vector<pushpull_config> cfgs;
  for (bool processes : {false, true}) {
    if ((processes && f.in_process_only) || (!processes && f.processes_only))
      continue;
    for (int s : shard_counts) {
      auto& c = cfgs.emplace_back();
      c.where = processes ? "processes" : "in process";
      c.shards = s;
    }
  }
  std::printf("\n1. push+pull: %d workers, %s parameters (%lld, %.2f MiB, tensors above %g MiB "
              "split across the shards), sync SGD, %d rounds after %d warm-up, payload per "
              "round %.2f MB (push + pull, all workers)\n",
              f.workers, spec.name.c_str(), static_cast<long long>(params),
              static_cast<double>(bytes) / 1048576.0, f.split_mb, f.rounds, f.round_warmup,
              payload / 1e6);
  std::fflush(stdout);
  for (int r = 0; r < f.repeats; ++r) {
    for (std::size_t k = 0; k < cfgs.size(); ++k) {
      auto& c = cfgs[(k + static_cast<std::size_t>(r)) % cfgs.size()];
      auto run = c.where == "processes"
                     ? pushpull_processes(f, c.shards, dir, r * 100 + static_cast<int>(k))
                     : pushpull_in_process(sys, f, spec, c.shards);
      const double gbps = payload / run.round_seconds / 1e9;
      c.round_seconds.push_back(run.round_seconds);
      c.gbps.push_back(gbps);
      c.apply_ms_per_round.push_back(1e3 * run.shards.apply_seconds / f.rounds);
      c.runs.push_back({{"round_ms", 1e3 * run.round_seconds},
                        {"gbps", gbps},
                        {"shard_bytes_in_per_round", run.shards.bytes_in / f.rounds},
                        {"shard_bytes_out_per_round", run.shards.bytes_out / f.rounds},
                        {"shard_update_ms_per_round", c.apply_ms_per_round.back()}});
      std::printf("  repeat %d  %-10s S=%d  %8.3f ms/round  %7.3f GB/s\n", r + 1, c.where.c_str(),
                  c.shards, 1e3 * run.round_seconds, gbps);
      std::fflush(stdout);
    }
  }
  std::printf("\n%-10s %6s %22s %22s %10s %8s %14s\n", "where", "shards", "ms/round (min-max)",
              "GB/s (min-max)", "GB/s/shard", "/memcpy", "update ms/rnd");
  nlohmann::json rows = nlohmann::json::array();
  for (const auto& c : cfgs) {
    auto t = summary::of(c.round_seconds);
    auto g = summary::of(c.gbps);
    auto u = summary::of(c.apply_ms_per_round);
    char ms[48], gb[48];
    std::snprintf(ms, sizeof ms, "%.3f (%.3f-%.3f)", 1e3 * t.median, 1e3 * t.min, 1e3 * t.max);
    std::snprintf(gb, sizeof gb, "%.3f (%.3f-%.3f)", g.median, g.min, g.max);
    std::printf("%-10s %6d %22s %22s %10.3f %7.1f%% %14.3f\n", c.where.c_str(), c.shards, ms, gb,
                g.median / c.shards, memcpy_bw > 0 ? 100.0 * g.median / memcpy_bw : 0.0, u.median);
    rows.push_back(
        {{"where", c.where},
         {"shards", c.shards},
         {"round_ms", {{"median", 1e3 * t.median}, {"min", 1e3 * t.min}, {"max", 1e3 * t.max}}},
         {"gbps", g.to_json()},
         {"gbps_per_shard", g.median / c.shards},
         {"over_memcpy", memcpy_bw > 0 ? g.median / memcpy_bw : 0.0},
         {"shard_update_ms_per_round", u.to_json()},
         {"runs", c.runs}});
  }
  std::printf("GB/s = push + pull payload of all workers per round / the slowest worker's "
              "seconds per round; /memcpy: against the one-thread memcpy above; update: the "
              "shards' summing + SGD time per round, all shards together\n");
  return {{"workers", f.workers},
          {"parameters", spec.name},
          {"parameter_count", params},
          {"parameter_bytes", bytes},
          {"split_bytes", static_cast<std::int64_t>(f.split_mb * 1048576.0)},
          {"payload_bytes_per_round", payload},
          {"rounds", f.rounds},
          {"round_warmup", f.round_warmup},
          {"mode", "sync"},
          {"optimizer", "sgd"},
          {"rows", rows}};
}

// ------------------------------------------------------------------ training

struct train_config {
  std::string label;
  int ps = 0; ///< 0: all-reduce
  std::string mode = "sync";
  int staleness = 0;
  bool slow = false;
  std::vector<double> sps, max_gap, loss, ps_mb_per_step;
  nlohmann::json runs = nlohmann::json::array();
};

struct ratio {
  double of_medians = 0;
  summary per_repeat;
};

ratio ratio_of(const train_config& a, const train_config& b) {
  ratio r;
  auto mb = summary::of(b.sps).median;
  r.of_medians = mb > 0 ? summary::of(a.sps).median / mb : 0;
  std::vector<double> each;
  for (std::size_t i = 0; i < std::min(a.sps.size(), b.sps.size()); ++i)
    each.push_back(a.sps[i] / b.sps[i]);
  r.per_repeat = summary::of(each);
  return r;
}

void run_train(caf::actor_system& sys, const ps_flags& f, train_config& c) {
  actors::train_options o;
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
    o.ps_mode = c.mode;
    o.staleness = c.staleness;
  }
  if (c.slow) {
    o.slow_stage = 0;
    o.slow_replica = f.slow_replica;
    o.slow_factor = f.slow_factor;
  }
  o.max_steps = f.warmup + f.steps;
  o.timing_warmup = f.warmup;
  o.evaluate = false;
  o.progress = false;
  auto r = actors::run_training(sys, o).report;
  auto steps = r.at("timed_steps").get<double>();
  auto secs = r.at("timed_seconds").get<double>();
  if (steps < 1 || secs <= 0)
    throw std::runtime_error(c.label + ": the job ran no timed steps");
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

nlohmann::json bench_training(const ps_flags& f, caf::actor_system& sys,
                              const std::vector<std::string>& parts) {
  const auto modes = parse_word_list("--modes", f.modes, {"sync", "async", "ssp"});
  const auto compare = parse_int_list("--compare-ps", f.compare_ps, 1, 256);
  std::vector<train_config> cfgs;
  auto find = [&](int ps, const std::string& mode, bool slow) -> std::size_t {
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
  };
  // Table rows: indices into cfgs.
  std::vector<std::size_t> fast_rows, slow_rows, cmp_rows;
  if (has(parts, "modes")) {
    for (const auto& m : modes)
      fast_rows.push_back(find(f.ps, m, false));
    for (const auto& m : modes)
      slow_rows.push_back(find(f.ps, m, true));
  }
  if (has(parts, "allreduce")) {
    cmp_rows.push_back(find(0, "sync", false));
    for (int s : compare)
      cmp_rows.push_back(find(s, "sync", false));
  }
  // The ratio base of each mode row: sync with the same shards and slowing.
  const auto sync_fast = has(parts, "modes") ? find(f.ps, "sync", false) : 0;
  const auto sync_slow = has(parts, "modes") ? find(f.ps, "sync", true) : 0;

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

  auto row = [&](std::size_t i, std::optional<std::size_t> base, const char* base_name) {
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
      auto q = ratio_of(c, cfgs[*base]);
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
    std::printf("%-22s %20s %24s %12s %24s\n", c.label.c_str(), sps, rat, gap, loss);
    return j;
  };
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
  const char* header = "%-22s %20s %24s %12s %24s\n";
  if (has(parts, "modes")) {
    nlohmann::json rows = nlohmann::json::array();
    std::printf("\n2. ps modes: %d workers, %d ps shard(s); ratio to sync with the same "
                "slowing, of the medians (per-repeat range)\n",
                f.workers, f.ps);
    std::printf(header, "config", "samples/s (min-max)", "ratio to sync", "max_gap/run",
                "train loss (min-max)");
    for (auto i : fast_rows)
      rows.push_back(row(i, sync_fast, "sync"));
    for (auto i : slow_rows)
      rows.push_back(row(i, sync_slow, "sync"));
    out["modes"] = {{"ps", f.ps}, {"staleness", f.staleness}, {"rows", rows}};
  }
  if (has(parts, "allreduce")) {
    nlohmann::json rows = nlohmann::json::array();
    std::printf("\n3. sync parameter servers vs all-reduce data parallelism, %d workers; ratio "
                "to all-reduce\n",
                f.workers);
    std::printf(header, "config", "samples/s (min-max)", "ratio to all-reduce", "max_gap/run",
                "train loss (min-max)");
    for (auto i : cmp_rows)
      rows.push_back(row(i, cmp_rows.front(), "allreduce"));
    out["vs_allreduce"] = {{"rows", rows}};
  }
  std::printf("train loss: the report's final_loss, the mean training loss over the run's "
              "steps (same data order in every run; async and ssp apply one update per worker "
              "per step, sync one per step); max_gap/run: the largest staleness a ps shard saw "
              "serving a pull (steps ahead of the slowest worker), per run\n");
  return out;
}

// ------------------------------------------------------------------ driver

int bench_ps(ps_flags f) {
  if (f.in_process_only && f.processes_only)
    throw rt::input_error("--in-process and --processes exclude each other (neither: both)");
  const auto parts = parse_word_list("--parts", f.parts, {"pushpull", "modes", "allreduce"});
  if (f.threads == 0)
    f.threads = f.workers;
  if (f.batch < f.workers)
    throw rt::input_error("--batch " + std::to_string(f.batch) + " is smaller than --workers " +
                          std::to_string(f.workers) + ": a worker would get no samples");
  if (has(parts, "pushpull")) {
    parse_int_list("--shards", f.shards, 1, 64);
    parameter_model(f.model, f.mb); // a bad --model fails before anything runs
  }
  if (has(parts, "modes") || has(parts, "allreduce")) {
    parse_word_list("--modes", f.modes, {"sync", "async", "ssp"});
    if (has(parts, "modes") && f.slow_replica >= f.workers)
      throw rt::input_error("--slow-replica " + std::to_string(f.slow_replica) +
                            " is not a worker (--workers " + std::to_string(f.workers) + ")");
    parse_int_list("--compare-ps", f.compare_ps, 1, 256);
    if (!fs::exists(f.data_dir))
      throw rt::input_error("--data: no directory '" + f.data_dir + "'");
  }

  rt::temp_dir dir{"troupe-bench-ps-"};
  const auto load_before = load_average();
  const auto cores = std::thread::hardware_concurrency();
  std::printf("troupe bench ps: %d workers, %d repeat(s) interleaved, medians\n%u cores, load "
              "average %s\n",
              f.workers, f.repeats, cores, load_before.c_str());
  const double memcpy_bw = memcpy_gbps();
  std::printf("memcpy (64 MiB buffers, 1 thread): %.2f GB/s\n", memcpy_bw);
  std::fflush(stdout);

  rt::system_config cfg;
  caf::actor_system sys{cfg};
  nlohmann::json doc{{"benchmark", "ps"},
                     {"workers", f.workers},
                     {"repeats", f.repeats},
                     {"parts", parts},
                     {"memcpy_gbps", memcpy_bw},
                     {"cores", cores},
                     {"load_average_before", load_before}};
  if (has(parts, "pushpull"))
    doc["pushpull"] = bench_pushpull(f, sys, dir.path(), memcpy_bw);
  if (has(parts, "modes") || has(parts, "allreduce"))
    doc["training"] = bench_training(f, sys, parts);
  const auto load_after = load_average();
  doc["load_average_after"] = load_after;
  std::printf("load average after: %s%s\n", load_after.c_str(),
              std::atof(load_after.c_str()) >= cores ? " (busy machine: figures are noisy)" : "");
  if (!f.json.empty()) {
    write_json_file(f.json, doc);
    std::printf("wrote %s\n", f.json.c_str());
  }
  std::fflush(stdout);
  return exit_ok;
}

} // namespace

command_action add_bench_ps_command(CLI::App& bench) {
  auto* cmd = bench.add_subcommand(
      "ps", "parameter servers: push+pull GB/s against shard count (in process and across "
            "processes), training samples/s of sync/async/ssp with a slow worker, and sync PS "
            "against all-reduce");
  auto f = std::make_shared<ps_flags>();
  cmd->add_option("--parts", f->parts, "which parts to run: pushpull, modes, allreduce")
      ->capture_default_str();
  cmd->add_option("--workers", f->workers, "workers W (data-parallel replicas)")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  cmd->add_option("--repeats", f->repeats, "repeats, the configurations interleaved")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  cmd->add_option("--json", f->json, "also write every figure as JSON to FILE");
  cmd->add_option("--shards", f->shards, "push+pull: ps shard counts, e.g. 1,2,4")
      ->capture_default_str();
  cmd->add_option("--model", f->model, "push+pull: the zoo model whose parameters are pushed")
      ->check(CLI::IsMember({"mlp", "cnn", "transformer"}))
      ->capture_default_str();
  cmd->add_option("--mb", f->mb,
                  "push+pull: a synthetic parameter set of this many MiB (one large tensor that "
                  "is split across the shards, two smaller ones) instead of --model")
      ->check(CLI::Range(0.0, 1024.0));
  cmd->add_option("--split-mb", f->split_mb,
                  "push+pull: tensors above this many MiB are split across the shards")
      ->check(CLI::Range(1e-6, 1024.0))
      ->capture_default_str();
  cmd->add_option("--rounds", f->rounds, "push+pull: timed rounds per measurement")
      ->check(CLI::Range(1, 1000000))
      ->capture_default_str();
  cmd->add_option("--round-warmup", f->round_warmup, "push+pull: untimed rounds first")
      ->check(CLI::Range(0, 1000000))
      ->capture_default_str();
  cmd->add_flag("--in-process", f->in_process_only, "push+pull: only in process");
  cmd->add_flag("--processes", f->processes_only,
                "push+pull: only across processes (default: both)");
  cmd->add_option("--ps", f->ps, "modes: ps shards of the sync/async/ssp runs")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  cmd->add_option("--modes", f->modes, "modes: ps modes to run (sync is the ratios' base)")
      ->capture_default_str();
  cmd->add_option("--staleness", f->staleness, "modes: ssp's K")
      ->check(CLI::Range(0, 1000000))
      ->capture_default_str();
  cmd->add_option("--slow-replica", f->slow_replica, "modes: the worker slowed in the slow runs")
      ->check(CLI::Range(0, 63))
      ->capture_default_str();
  cmd->add_option("--slow-factor", f->slow_factor, "modes: how much slower its kernels run")
      ->check(CLI::Range(1.0, 100.0))
      ->capture_default_str();
  cmd->add_option("--compare-ps", f->compare_ps,
                  "allreduce: ps shard counts (sync) run against all-reduce")
      ->capture_default_str();
  cmd->add_option("--batch", f->batch, "training: global batch")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1} << 20))
      ->capture_default_str();
  cmd->add_option("--steps", f->steps, "training: timed steps per run")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{10000000}))
      ->capture_default_str();
  cmd->add_option("--warmup", f->warmup, "training: untimed steps before them")
      ->check(CLI::Range(std::int64_t{0}, std::int64_t{10000000}))
      ->capture_default_str();
  cmd->add_option("--lr", f->lr, "SGD learning rate (push+pull shards and training)")
      ->check(CLI::Range(1e-12, 100.0))
      ->capture_default_str();
  cmd->add_option("--threads", f->threads,
                  "training: compute threads in all (default: one per worker)")
      ->check(CLI::Range(1, 1024));
  cmd->add_option("--data", f->data_dir, "training: MNIST directory")->capture_default_str();

  auto* rank = bench.add_subcommand("ps-rank", "one shard or worker process of `bench ps`");
  rank->group(""); // hidden: only `bench ps` starts it
  auto rf = std::make_shared<rank_flags>();
  rank->add_option("--role", rf->role)->required()->check(CLI::IsMember({"shard", "worker"}));
  rank->add_option("--index", rf->index)->required()->check(CLI::Range(0, 63));
  rank->add_option("--shards", rf->shards)->required()->check(CLI::Range(1, 64));
  rank->add_option("--workers", rf->workers)->required()->check(CLI::Range(1, 64));
  rank->add_option("--key-file", rf->key_file)->required();
  rank->add_option("--model", rf->model);
  rank->add_option("--mb", rf->mb)->check(CLI::Range(0.0, 1024.0));
  rank->add_option("--split-mb", rf->split_mb)->check(CLI::Range(1e-6, 1024.0));
  rank->add_option("--lr", rf->lr);

  return [cmd, f, rank, rf] {
    if (cmd->parsed())
      return bench_ps(*f);
    if (rank->parsed()) {
      const int n = rf->role == "shard" ? rf->shards : rf->workers;
      if (rf->index >= n)
        throw rt::input_error("--index " + std::to_string(rf->index) + " out of range");
      return run_rank(*rf);
    }
    return exit_bad_input;
  };
}

} // namespace troupe::apps
