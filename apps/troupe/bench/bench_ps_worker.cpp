#include "apps/troupe/bench/bench_ps_worker.hpp"

#include <algorithm>
#include <string>

#include "apps/troupe/bench/bench_ps_options.hpp"
#include "actors/protocol/messages.hpp"

namespace troupe::apps::ps_bench {

namespace rt = troupe::runtime;

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
      [self, fail](troupe::actors::ps_msg& m) {
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

shard_totals shard_stats(caf::actor_system& sys, const std::vector<caf::actor>& shards) {
  caf::scoped_actor self{sys};
  shard_totals t;
  std::string err;
  for (const auto& s : shards)
    self->request(s, 30s, troupe::actors::ps_stats_atom::value)
        .receive(
            [&](troupe::actors::ps_stats& x) {
              t.bytes_in += static_cast<double>(x.bytes_in);
              t.bytes_out += static_cast<double>(x.bytes_out);
              t.apply_seconds += x.apply_seconds;
            },
            [&](caf::error& e) { err = sys.render(e); });
  if (!err.empty())
    throw std::runtime_error("ps shard stats: " + err);
  return t;
}

} // namespace troupe::apps::ps_bench
