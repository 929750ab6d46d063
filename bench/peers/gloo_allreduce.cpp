// troupe_peer_gloo: Gloo's ring all-reduce (gloo::allreduce with
// Algorithm::RING, what PyTorch's gloo backend runs for CPU tensors) of f32
// buffers over Gloo's TCP transport on 127.0.0.1, one process per rank,
// rendezvous through a FileStore directory. Started N times by `troupe bench
// allreduce`; see allreduce_peer_args.hpp for flags and output.

#include <chrono>
#include <cstdio>
#include <exception>
#include <memory>
#include <vector>

#include <gloo/allreduce.h>
#include <gloo/barrier.h>
#include <gloo/math.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/file_store.h>
#include <gloo/rendezvous/prefix_store.h>
#include <gloo/transport/tcp/device.h>

#include "allreduce_peer_args.hpp"

namespace {

using clock_type = std::chrono::steady_clock;

void allreduce_sum(const std::shared_ptr<gloo::Context>& ctx, const float* in, float* out,
                   std::size_t elements, std::uint32_t tag) {
  gloo::AllreduceOptions o{ctx};
  o.setAlgorithm(gloo::AllreduceOptions::Algorithm::RING);
  o.setInput(const_cast<float*>(in), elements);
  o.setOutput(out, elements);
  o.setReduceFunction(
      static_cast<void (*)(void*, const void*, const void*, std::size_t)>(&gloo::sum<float>));
  o.setTag(tag);
  gloo::allreduce(o);
}

double slowest(const std::shared_ptr<gloo::Context>& ctx, double mine) {
  double v = mine;
  gloo::AllreduceOptions o{ctx};
  o.setOutput(&v, 1);
  o.setReduceFunction(
      static_cast<void (*)(void*, const void*, const void*, std::size_t)>(&gloo::max<double>));
  o.setTag(2);
  gloo::allreduce(o);
  return v;
}

} // namespace

int main(int argc, char** argv) {
  try {
    auto a = troupe::bench::parse_peer_args(argc, argv);
    if (a.rank < 0 || a.size < 1 || a.rank >= a.size || a.store.empty())
      throw std::invalid_argument("need --rank, --size and --store");
    gloo::transport::tcp::attr attr;
    attr.hostname = "127.0.0.1";
    auto dev = gloo::transport::tcp::CreateDevice(attr);
    gloo::rendezvous::FileStore file_store{a.store};
    gloo::rendezvous::PrefixStore store{"troupe-bench", file_store};
    auto ctx = std::make_shared<gloo::rendezvous::Context>(a.rank, a.size);
    ctx->setTimeout(std::chrono::seconds(120));
    ctx->connectFullMesh(store, dev);
    std::shared_ptr<gloo::Context> c = ctx;
    for (const auto& s : a.sizes) {
      auto elements = s.bytes / sizeof(float);
      auto in = troupe::bench::peer_input(elements, a.rank);
      std::vector<float> out(elements, 0.f);
      for (int i = 0; i < a.warmup; ++i)
        allreduce_sum(c, in.data(), out.data(), elements, 1);
      std::vector<double> per_op;
      for (int r = 0; r < a.reps; ++r) {
        gloo::BarrierOptions b{c};
        b.setTag(3);
        gloo::barrier(b);
        auto t0 = clock_type::now();
        for (int i = 0; i < s.iters; ++i)
          allreduce_sum(c, in.data(), out.data(), elements, 1);
        double dt = std::chrono::duration<double>(clock_type::now() - t0).count() / s.iters;
        per_op.push_back(slowest(c, dt));
      }
      bool ok = troupe::bench::peer_result_ok(out, a.size);
      if (a.rank == 0)
        troupe::bench::print_peer_row(s, ok, per_op);
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "troupe_peer_gloo: %s\n", e.what());
    return 1;
  }
}
