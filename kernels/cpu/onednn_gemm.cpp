#include "kernels/cpu/onednn_gemm.hpp"

#include <omp.h>

#include <map>
#include <string>
#include <tuple>

#include <fmt/format.h>
#include <oneapi/dnnl/dnnl.hpp>

namespace troupe::kernels::cpu {
namespace {

/// What a primitive is made for. The thread budget is part of it: oneDNN's
/// OpenMP build splits the work when the primitive is created.
using shape_key = std::tuple<bool, bool, std::int64_t, std::int64_t, std::int64_t, std::int64_t,
                             std::int64_t, std::int64_t, float, float, int>;

struct cached_matmul {
  dnnl::matmul primitive;
  dnnl::memory::desc a, b, c;
};

/// One engine, stream and primitive cache per thread: a device's thread
/// creates each of its layers' primitives once, and no lock is needed.
struct thread_matmuls {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};
  std::map<shape_key, cached_matmul> primitives;
};

thread_matmuls& this_thread_matmuls() {
  thread_local thread_matmuls t;
  return t;
}

cached_matmul make_matmul(const dnnl::engine& eng, trans ta, trans tb, std::int64_t m,
                          std::int64_t n, std::int64_t k, std::int64_t lda, std::int64_t ldb,
                          std::int64_t ldc, float alpha, float beta) {
  using dt = dnnl::memory::data_type;
  using dims = dnnl::memory::dims;
  // Row-major op(A) is m x k: its strides say whether A is stored transposed.
  const dims a_strides = ta == trans::no ? dims{lda, 1} : dims{1, lda};
  const dims b_strides = tb == trans::no ? dims{ldb, 1} : dims{1, ldb};
  dnnl::memory::desc a_md({m, k}, dt::f32, a_strides), b_md({k, n}, dt::f32, b_strides),
      c_md({m, n}, dt::f32, dims{ldc, 1});
  dnnl::primitive_attr attr;
  if (alpha != 1.f)
    attr.set_output_scales(0, {alpha});
  if (beta != 0.f) {
    dnnl::post_ops ops;
    ops.append_sum(beta);
    attr.set_post_ops(ops);
  }
  dnnl::matmul::primitive_desc pd{dnnl::matmul::desc{a_md, b_md, c_md}, attr, eng};
  return {dnnl::matmul{pd}, a_md, b_md, c_md};
}

} // namespace

void onednn_gemm(trans ta, trans tb, std::int64_t m, std::int64_t n, std::int64_t k, float alpha,
                 const float* a, std::int64_t lda, const float* b, std::int64_t ldb, float beta,
                 float* c, std::int64_t ldc) {
  auto& t = this_thread_matmuls();
  const shape_key key{ta == trans::yes,     tb == trans::yes, m, n, k, lda, ldb, ldc, alpha, beta,
                      omp_get_max_threads()};
  auto it = t.primitives.find(key);
  if (it == t.primitives.end())
    it = t.primitives
             .emplace(key, make_matmul(t.engine, ta, tb, m, n, k, lda, ldb, ldc, alpha, beta))
             .first;
  const auto& mm = it->second;
  // Memory objects only wrap the caller's pointers: no copy.
  dnnl::memory am(mm.a, t.engine, const_cast<float*>(a));
  dnnl::memory bm(mm.b, t.engine, const_cast<float*>(b));
  dnnl::memory cm(mm.c, t.engine, c);
  mm.primitive.execute(t.stream, {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}});
  t.stream.wait();
}

namespace {

std::string isa_name(dnnl::cpu_isa isa) {
  using dnnl::cpu_isa;
  switch (isa) {
  case cpu_isa::sse41:
    return "sse41";
  case cpu_isa::avx:
    return "avx";
  case cpu_isa::avx2:
    return "avx2";
  case cpu_isa::avx2_vnni:
    return "avx2_vnni";
  case cpu_isa::avx512_core:
    return "avx512_core";
  case cpu_isa::avx512_core_vnni:
    return "avx512_core_vnni";
  case cpu_isa::avx512_core_bf16:
    return "avx512_core_bf16";
  case cpu_isa::avx512_core_amx:
    return "avx512_core_amx";
  default:
    return std::to_string(static_cast<int>(isa));
  }
}

} // namespace

std::string onednn_description() {
  const dnnl_version_t* v = dnnl_version();
  return fmt::format("onednn={}.{}.{} isa={}", v->major, v->minor, v->patch,
                     isa_name(dnnl::get_effective_cpu_isa()));
}

} // namespace troupe::kernels::cpu
