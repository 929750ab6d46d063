#include "apps/troupe/bench/bench_allreduce_driver.hpp"

#include <algorithm>
#include <chrono>
#include <string>

#include "apps/troupe/bench/bench_allreduce_options.hpp"
#include "actors/protocol/messages.hpp"

namespace troupe::apps::allreduce_bench {

namespace fs = std::filesystem;
namespace rt = troupe::runtime;
namespace coll = troupe::actors::collectives;
using namespace std::chrono_literals;

namespace {

bool spot_check(const rt::tensor& t, float expect) {
  auto n = t.numel();
  if (t.type() != rt::dtype::f32 || n < 1)
    return false;
  const float* p = t.data<float>();
  return p[0] == expect && p[n / 2] == expect && p[n - 1] == expect;
}

void issue(driver_actor* self) {
  auto& st = self->state;
  auto op = st.next_op++;
  st.pending = st.ranks.size();
  // No timeout per op: each would wake CAF's clock thread, which the timed
  // loop would pay for; run_driver's deadline covers a stuck rank.
  for (std::size_t r = 0; r < st.ranks.size(); ++r)
    self->request(st.ranks[r], caf::infinite, troupe::actors::allreduce_atom::value, op, st.inputs[r])
        .then(
            [self](rt::tensor& t) {
              auto& s = self->state;
              if (s.failed)
                return;
              if (!spot_check(t, s.expect)) {
                s.failed = true;
                s.rp.deliver(caf::make_error(caf::sec::runtime_error,
                                             "all-reduce result differs from the expected sum"));
                return;
              }
              if (--s.pending > 0)
                return;
              if (--s.left > 0)
                return issue(self);
              s.rp.deliver(std::chrono::duration<double>(clock_type::now() - s.t0).count());
            },
            [self](caf::error& e) {
              auto& s = self->state;
              if (!s.failed) {
                s.failed = true;
                s.rp.deliver(std::move(e));
              }
            });
}

} // namespace

caf::behavior driver(driver_actor* self, std::vector<caf::actor> ranks,
                     std::vector<rt::tensor> inputs, float expect, std::int64_t first_op) {
  self->state.ranks = std::move(ranks);
  self->state.inputs = std::move(inputs);
  self->state.expect = expect;
  self->state.next_op = first_op;
  return {
      [self](bench_run_atom, std::int32_t iters) -> caf::result<double> {
        auto& st = self->state;
        if (st.failed || iters < 1)
          return caf::make_error(caf::sec::runtime_error, "driver failed before");
        st.left = iters;
        st.t0 = clock_type::now();
        st.rp = self->make_response_promise();
        issue(self);
        return st.rp;
      },
  };
}

std::vector<rt::tensor> constant_inputs(const std::vector<int>& ranks, std::int64_t numel) {
  std::vector<rt::tensor> out;
  for (int r : ranks) {
    auto t = rt::tensor::empty(rt::dtype::f32, {numel});
    std::fill_n(t.mutable_data<float>(), numel, static_cast<float>(r + 1));
    out.push_back(std::move(t));
  }
  return out;
}

float expected_sum(int n) {
  return static_cast<float>(n) * static_cast<float>(n + 1) / 2.f;
}

double run_driver(caf::actor_system& sys, const caf::actor& d, int iters) {
  caf::scoped_actor self{sys};
  double s = 0;
  std::string err;
  self->request(d, op_timeout * iters, bench_run_atom::value, static_cast<std::int32_t>(iters))
      .receive([&](double x) { s = x; }, [&](caf::error& e) { err = sys.render(e); });
  if (!err.empty())
    throw std::runtime_error("all-reduce failed: " + err);
  return s;
}

std::vector<double> measure(caf::actor_system& sys, const caf::actor& timed,
                            const caf::actor& barrier, int warmup, int reps, int iters) {
  if (warmup > 0)
    run_driver(sys, timed, warmup);
  std::vector<double> out;
  for (int r = 0; r < reps; ++r) {
    run_driver(sys, barrier, 1);
    out.push_back(run_driver(sys, timed, iters) / iters);
  }
  return out;
}

} // namespace troupe::apps::allreduce_bench
