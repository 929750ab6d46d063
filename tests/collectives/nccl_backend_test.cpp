// The CPU-testable parts of the NCCL collective backend: backend selection,
// the padding of reduce-scatter / all-gather to NCCL's equal counts (checked by
// emulating what NCCL does with the padded buffers), the operation headers,
// and the errors of spawning a NCCL rank where it cannot run.

#define BOOST_TEST_DYN_LINK
#define BOOST_TEST_MODULE nccl_backend
#include <boost/test/unit_test.hpp>

#include <cstring>
#include <numeric>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include <caf/actor_system.hpp>

#include "actors/plan/collective_algorithms.hpp"
#include "actors/plan/collective_backend.hpp"
#include "actors/collectives/nccl_group.hpp"
#include "actors/collectives/nccl_op_header.hpp"
#include "actors/collectives/nccl_padding.hpp"
#include "runtime/net/caf_error.hpp"
#include "actors/protocol/system_config.hpp"
#include "runtime/tensor.hpp"

// How Boost.Test prints the values it compares.
namespace troupe::actors {
std::ostream& operator<<(std::ostream& o, collective_backend b) {
  return o << to_string(b);
}
namespace nccl {
std::ostream& operator<<(std::ostream& o, const padded_chunk& c) {
  return o << "{" << c.offset << ", " << c.slot_offset << ", " << c.count << "}";
}
} // namespace nccl
} // namespace troupe::actors
namespace troupe::runtime {
std::ostream& operator<<(std::ostream& o, dtype t) {
  return o << to_string(t);
}
} // namespace troupe::runtime

using namespace troupe;
using actors::collective_backend;
using runtime::device;
namespace coll = actors::collectives;
namespace nccl = actors::nccl;

namespace {

std::vector<float> iota_values(std::int64_t n, float start) {
  std::vector<float> v(static_cast<std::size_t>(n));
  std::iota(v.begin(), v.end(), start);
  return v;
}

std::vector<float> random_values(std::int64_t n, std::uint32_t seed) {
  std::mt19937 gen{seed};
  std::uniform_real_distribution<float> u{-1.f, 1.f};
  std::vector<float> v(static_cast<std::size_t>(n));
  for (auto& x : v)
    x = u(gen);
  return v;
}

} // namespace

BOOST_AUTO_TEST_SUITE(selection)

BOOST_AUTO_TEST_CASE(nccl_exactly_when_all_replicas_are_cuda_and_nccl_is_available) {
  using actors::choose_collective_backend;
  std::vector<device> gpus{device::cuda(0), device::cuda(1), device::cuda(2)};
  std::vector<device> cpus{device::cpu(), device::cpu()};
  std::vector<device> mixed{device::cuda(0), device::cpu()};
  BOOST_TEST(choose_collective_backend(gpus, true) == collective_backend::nccl);
  BOOST_TEST(choose_collective_backend({device::cuda(0)}, true) == collective_backend::nccl);
  BOOST_TEST(choose_collective_backend(gpus, false) == collective_backend::actors);
  BOOST_TEST(choose_collective_backend(cpus, true) == collective_backend::actors);
  BOOST_TEST(choose_collective_backend(cpus, false) == collective_backend::actors);
  BOOST_TEST(choose_collective_backend(mixed, true) == collective_backend::actors);
  BOOST_TEST(choose_collective_backend({device::cpu(), device::cuda(0)}, true) ==
             collective_backend::actors);
  BOOST_TEST(choose_collective_backend({}, true) == collective_backend::actors);
  // Same device index on several replicas (one per process): still NCCL.
  BOOST_TEST(choose_collective_backend({device::cuda(0), device::cuda(0)}, true) ==
             collective_backend::nccl);
  BOOST_TEST(actors::to_string(collective_backend::nccl) == "nccl");
  BOOST_TEST(actors::to_string(collective_backend::actors) == "actors");
}

BOOST_AUTO_TEST_CASE(compiled_flag_and_probe_agree_with_the_build) {
  BOOST_TEST(actors::nccl_compiled() == (TROUPE_HAVE_NCCL != 0));
  std::string why;
  bool available = actors::nccl_available(&why);
  if (!actors::nccl_compiled()) {
    BOOST_TEST(!available);
    BOOST_TEST(why == "NCCL backend not compiled in");
  } else if (!available) {
    BOOST_TEST(why.rfind("no CUDA device: ", 0) == 0, why);
  } else {
    BOOST_TEST(why.empty());
  }
  BOOST_TEST_MESSAGE("nccl_compiled=" << actors::nccl_compiled() << " nccl_available=" << available
                                      << (why.empty() ? "" : " (" + why + ")"));
  // On this machine's usual CI (no GPU) a CUDA plan therefore stays on actors.
  auto chosen = actors::choose_collective_backend({device::cuda(0), device::cuda(1)}, available);
  BOOST_TEST((chosen == collective_backend::nccl) == available);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(padding)

BOOST_AUTO_TEST_CASE(partition_layout_matches_the_actor_backend_cut) {
  for (int n = 1; n <= 9; ++n)
    for (std::int64_t numel : {0, 1, 2, 5, 7, 8, 9, 64, 1000, 1001, 1023}) {
      auto l = nccl::pad_partition(numel, n);
      auto p = coll::partition(numel, n);
      BOOST_REQUIRE_EQUAL(l.chunks.size(), p.size());
      std::int64_t slot = numel == 0 ? 0 : (numel + n - 1) / n;
      BOOST_TEST(l.slot == slot, "n=" << n << " numel=" << numel);
      BOOST_TEST(l.numel() == numel);
      BOOST_TEST(l.padded_numel() == slot * n);
      BOOST_TEST(l.padded_numel() - numel < n); // never more than n - 1 padding elements
      for (std::size_t r = 0; r < p.size(); ++r) {
        BOOST_TEST(l.chunks[r].offset == p[r].offset);
        BOOST_TEST(l.chunks[r].count == p[r].count);
        BOOST_TEST(l.chunks[r].slot_offset == static_cast<std::int64_t>(r) * slot);
        BOOST_TEST(l.chunks[r].count <= l.slot);
      }
      BOOST_TEST(l.is_identity() == (numel % n == 0), "n=" << n << " numel=" << numel);
    }
}

BOOST_AUTO_TEST_CASE(counts_layout_for_uneven_all_gather) {
  auto l = nccl::pad_counts({3, 0, 5, 1});
  BOOST_TEST(l.slot == 5);
  BOOST_TEST(l.numel() == 9);
  BOOST_TEST(l.padded_numel() == 20);
  BOOST_TEST(!l.is_identity());
  std::vector<nccl::padded_chunk> want{{0, 0, 3}, {3, 5, 0}, {3, 10, 5}, {8, 15, 1}};
  BOOST_TEST(l.chunks == want);
  BOOST_TEST(nccl::pad_counts({4, 4, 4}).is_identity());
  BOOST_TEST(nccl::pad_counts({0, 0}).slot == 0);
  BOOST_TEST(nccl::pad_counts({0, 0}).is_identity());
  BOOST_CHECK_THROW(nccl::pad_counts({}), std::invalid_argument);
  BOOST_CHECK_THROW(nccl::pad_counts({1, -1}), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(pack_zero_fills_and_unpack_inverts) {
  auto l = nccl::pad_counts({2, 3, 1});
  auto src = iota_values(6, 1.f); // 1..6
  std::vector<float> padded(static_cast<std::size_t>(l.padded_numel()), -7.f);
  nccl::pack(l, src.data(), padded.data(), sizeof(float));
  std::vector<float> want{1, 2, 0, 3, 4, 5, 6, 0, 0};
  BOOST_TEST(padded == want, boost::test_tools::per_element());
  std::vector<float> back(6, -1.f);
  nccl::unpack(l, padded.data(), back.data(), sizeof(float));
  BOOST_TEST(back == src, boost::test_tools::per_element());
  // Other element sizes (all-gather moves any dtype).
  std::vector<std::int64_t> src64{10, 20, 30, 40, 50, 60};
  std::vector<std::int64_t> padded64(9, 99), back64(6, 0);
  nccl::pack(l, src64.data(), padded64.data(), sizeof(std::int64_t));
  nccl::unpack(l, padded64.data(), back64.data(), sizeof(std::int64_t));
  BOOST_TEST(back64 == src64, boost::test_tools::per_element());
  BOOST_TEST(padded64[2] == 0);
}

// What ncclReduceScatter does with the padded buffers: slot r of the
// elementwise sum goes to rank r. After unpadding, rank r must hold chunk r of
// partition(numel, n) of the sum, as the actor backend returns it.
BOOST_AUTO_TEST_CASE(emulated_reduce_scatter_returns_the_partition_chunks) {
  for (int n = 1; n <= 6; ++n)
    for (std::int64_t numel : {0, 1, 5, 13, 64, 1001}) {
      auto l = nccl::pad_partition(numel, n);
      std::vector<std::vector<float>> inputs;
      for (int r = 0; r < n; ++r)
        inputs.push_back(random_values(numel, static_cast<std::uint32_t>(100 * n + r)));
      std::vector<float> padded_sum(static_cast<std::size_t>(l.padded_numel()), 0.f);
      for (const auto& x : inputs) {
        std::vector<float> padded(static_cast<std::size_t>(l.padded_numel()), 1e9f);
        nccl::pack(l, x.data(), padded.data(), sizeof(float));
        for (std::size_t i = 0; i < padded.size(); ++i)
          padded_sum[i] += padded[i];
      }
      auto parts = coll::partition(numel, n);
      for (int r = 0; r < n; ++r) {
        const auto& c = l.chunks[static_cast<std::size_t>(r)];
        // NCCL delivers slot r; the rank keeps its first c.count elements.
        for (std::int64_t i = 0; i < l.slot; ++i) {
          float got = padded_sum[static_cast<std::size_t>(c.slot_offset + i)];
          if (i >= c.count) {
            BOOST_TEST(got == 0.f); // padding sums to zero
            continue;
          }
          float want = 0.f;
          for (const auto& x : inputs)
            want += x[static_cast<std::size_t>(parts[static_cast<std::size_t>(r)].offset + i)];
          BOOST_TEST(got == want);
        }
      }
    }
}

// What ncclAllGather does: slot r of every rank's output is rank r's padded
// input. After unpacking, the output is the concatenation in rank order.
BOOST_AUTO_TEST_CASE(emulated_all_gather_concatenates_uneven_parts) {
  std::vector<std::vector<std::int64_t>> cases{{3, 0, 5, 1}, {4, 4}, {1}, {0, 0, 2}, {7, 6, 6}};
  for (const auto& counts : cases) {
    auto l = nccl::pad_counts(counts);
    std::vector<float> concat;
    std::vector<float> gathered;
    float next = 1.f;
    for (auto c : counts) {
      auto part = iota_values(c, next);
      next += static_cast<float>(c);
      concat.insert(concat.end(), part.begin(), part.end());
      std::vector<float> slot(static_cast<std::size_t>(l.slot), 0.f);
      std::copy(part.begin(), part.end(), slot.begin());
      gathered.insert(gathered.end(), slot.begin(), slot.end());
    }
    BOOST_REQUIRE_EQUAL(static_cast<std::int64_t>(gathered.size()), l.padded_numel());
    std::vector<float> out(static_cast<std::size_t>(l.numel()), -1.f);
    nccl::unpack(l, gathered.data(), out.data(), sizeof(float));
    BOOST_TEST(out == concat, boost::test_tools::per_element());
  }
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(headers)

using nccl::op_header;
using nccl::op_kind;

op_header header(op_kind k, std::int64_t op, runtime::tensor t, std::int32_t root = 0) {
  return op_header::of(k, op, root, t);
}

runtime::tensor f32(runtime::shape_t shape) {
  return runtime::tensor::zeros(runtime::dtype::f32, std::move(shape));
}

BOOST_AUTO_TEST_CASE(encode_decode_round_trip) {
  auto h = header(op_kind::all_gather, -42, runtime::tensor::zeros(runtime::dtype::i64, {3, 1, 2}));
  auto w = nccl::encode(h);
  auto d = nccl::decode(w);
  BOOST_REQUIRE(d.has_value());
  BOOST_TEST(static_cast<int>(d->kind) == static_cast<int>(op_kind::all_gather));
  BOOST_TEST(d->op == -42);
  BOOST_TEST(d->has_tensor);
  BOOST_TEST(d->type == runtime::dtype::i64);
  BOOST_TEST(d->numel == 6);
  BOOST_TEST(d->shape == (runtime::shape_t{3, 1, 2}));

  auto b = nccl::decode(nccl::encode(header(op_kind::broadcast, 1, {}, 3)));
  BOOST_REQUIRE(b.has_value());
  BOOST_TEST(!b->has_tensor);
  BOOST_TEST(b->root == 3);

  auto bad = w;
  bad[0] ^= 1; // magic
  BOOST_TEST(!nccl::decode(bad).has_value());
  bad = w;
  bad[1] = 99; // kind
  BOOST_TEST(!nccl::decode(bad).has_value());
  bad = w;
  bad[5] = 17; // dtype
  BOOST_TEST(!nccl::decode(bad).has_value());
  bad = w;
  bad[6] = 7; // numel disagrees with the extents
  BOOST_TEST(!nccl::decode(bad).has_value());
  BOOST_TEST(!nccl::decode(std::span<const std::int64_t>(w.data(), 3)).has_value());

  // More extents than travel: the rank survives, the extents do not, and the
  // kinds that need the shape refuse it on every rank.
  auto deep = header(op_kind::all_gather, 1, f32(runtime::shape_t(9, 1)));
  auto dd = nccl::decode(nccl::encode(deep));
  BOOST_REQUIRE(dd.has_value());
  BOOST_TEST(dd->shape.size() == 9u);
  BOOST_TEST(nccl::check_headers({*dd, *dd}, 0).find("rank > 8") != std::string::npos);
  auto deep_ar =
      nccl::decode(nccl::encode(header(op_kind::all_reduce, 1, f32(runtime::shape_t(9, 1)))));
  BOOST_REQUIRE(deep_ar.has_value());
  BOOST_TEST(nccl::check_headers({*deep_ar, *deep_ar}, 1).empty());
}

BOOST_AUTO_TEST_CASE(checks_fail_alike_on_every_rank) {
  std::vector<op_header> ok{header(op_kind::all_reduce, 1, f32({4})),
                            header(op_kind::all_reduce, 1, f32({2, 2}))};
  BOOST_TEST(nccl::check_headers(ok, 0).empty());
  BOOST_TEST(nccl::check_headers(ok, 1).empty());

  std::vector<op_header> size{header(op_kind::all_reduce, 1, f32({4})),
                              header(op_kind::all_reduce, 1, f32({5}))};
  BOOST_TEST(nccl::check_headers(size, 0) ==
             "buffer size mismatch: rank 1 has 5 elements, this rank 4");
  BOOST_TEST(!nccl::check_headers(size, 1).empty());

  std::vector<op_header> kind{header(op_kind::all_reduce, 1, f32({4})),
                              header(op_kind::reduce_scatter, 1, f32({4}))};
  BOOST_TEST(nccl::check_headers(kind, 0) ==
             "rank 1 runs reduce-scatter but this rank runs all-reduce under the same op id");

  std::vector<op_header> order{header(op_kind::all_reduce, 1, f32({4})),
                               header(op_kind::all_reduce, 2, f32({4}))};
  BOOST_TEST(nccl::check_headers(order, 0).find("out of order") != std::string::npos);

  std::vector<op_header> dtype{
      header(op_kind::reduce_scatter, 1, f32({4})),
      header(op_kind::reduce_scatter, 1, runtime::tensor::zeros(runtime::dtype::f64, {4}))};
  BOOST_TEST(nccl::check_headers(dtype, 0) == "rank 1: reduce-scatter supports f32 tensors only");

  std::vector<op_header> undefined{header(op_kind::all_reduce, 1, f32({4})),
                                   header(op_kind::all_reduce, 1, {})};
  BOOST_TEST(nccl::check_headers(undefined, 0) == "rank 1: all-reduce of an undefined tensor");
}

BOOST_AUTO_TEST_CASE(broadcast_checks_root_and_carries_its_shape) {
  std::vector<op_header> ok{header(op_kind::broadcast, 5, {}, 1),
                            header(op_kind::broadcast, 5, f32({2, 3}), 1),
                            header(op_kind::broadcast, 5, f32({9}), 1)};
  BOOST_TEST(nccl::check_headers(ok, 0).empty());
  BOOST_TEST(nccl::check_headers(ok, 2).empty());
  BOOST_TEST(ok[1].shape == (runtime::shape_t{2, 3}));

  std::vector<op_header> roots{header(op_kind::broadcast, 5, f32({2}), 0),
                               header(op_kind::broadcast, 5, {}, 1)};
  BOOST_TEST(nccl::check_headers(roots, 0) ==
             "broadcast root mismatch: rank 1 has root 1, this rank 0");
  std::vector<op_header> range{header(op_kind::broadcast, 5, f32({2}), 2),
                               header(op_kind::broadcast, 5, {}, 2)};
  BOOST_TEST(nccl::check_headers(range, 1) == "broadcast root 2 out of range");
  std::vector<op_header> empty_root{header(op_kind::broadcast, 5, {}, 0),
                                    header(op_kind::broadcast, 5, f32({2}), 0)};
  BOOST_TEST(nccl::check_headers(empty_root, 1).find("undefined tensor") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(all_gather_shape_follows_the_actor_backend_rule) {
  auto ag = [](std::vector<runtime::tensor> ts) {
    std::vector<op_header> hs;
    for (auto& t : ts)
      hs.push_back(header(op_kind::all_gather, 0, t));
    BOOST_TEST(nccl::check_headers(hs, 0).empty());
    return nccl::all_gather_shape(hs);
  };
  BOOST_TEST(ag({f32({2, 3}), f32({1, 3}), f32({4, 3})}) == (runtime::shape_t{7, 3}));
  BOOST_TEST(ag({f32({2, 3}), f32({3, 2})}) == (runtime::shape_t{12}));
  BOOST_TEST(ag({f32({5}), f32({0}), f32({2})}) == (runtime::shape_t{7}));
  BOOST_TEST(ag({f32({}), f32({})}) == (runtime::shape_t{2}));
  BOOST_TEST(ag({f32({2, 2}), f32({4})}) == (runtime::shape_t{8}));
  BOOST_TEST(ag({f32({})}) == (runtime::shape_t{})); // one rank keeps its shape
  std::vector<op_header> mixed{
      header(op_kind::all_gather, 0, f32({2})),
      header(op_kind::all_gather, 0, runtime::tensor::zeros(runtime::dtype::i32, {2}))};
  BOOST_TEST(nccl::check_headers(mixed, 0) == "all-gather: ranks passed different dtypes");
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(spawning)

BOOST_AUTO_TEST_CASE(spawning_where_nccl_cannot_run_is_a_clear_error) {
  actors::system_config cfg{2};
  caf::actor_system sys{cfg};
  actors::nccl_rank_config rc;
  rc.rank = 0;
  rc.size = 2;
  rc.device = device::cuda(0);
  std::string why;
  if (actors::nccl_available(&why)) {
    BOOST_TEST_MESSAGE("a GPU is present: the GPU test (nccl_group_test) covers spawning");
    return;
  }
  auto r = actors::spawn_nccl_rank(sys, rc);
  BOOST_REQUIRE(!r);
  auto text = runtime::describe(sys, r.error());
  BOOST_TEST_MESSAGE(text);
  if (!actors::nccl_compiled())
    BOOST_TEST(text.find("NCCL backend not compiled in") != std::string::npos, text);
  else
    BOOST_TEST(text.find("no CUDA device: ") != std::string::npos, text);

  auto g = actors::spawn_nccl_group(sys, {device::cuda(0), device::cuda(1)});
  BOOST_TEST(!g);

  if (actors::nccl_compiled()) {
    rc.device = device::cpu();
    auto cpu = actors::spawn_nccl_rank(sys, rc);
    BOOST_REQUIRE(!cpu);
    BOOST_TEST(runtime::describe(sys, cpu.error()).find("is not a CUDA device") !=
               std::string::npos);
  }
}

BOOST_AUTO_TEST_SUITE_END()
