#include "models/layers/causal_self_attention.hpp"

#include <cmath>

#include "kernels/cpu/attention.hpp"
#include "kernels/cpu/gemm.hpp"
#include "models/layers/checks.hpp"
#include "models/layers/dense.hpp"
#include "models/layers/parameter_loan.hpp"
#include "models/layers/tp_dense.hpp"

namespace troupe::models {

namespace kc = kernels::cpu;

namespace {

std::int64_t checked_head_dim(const std::string& who, std::int64_t dim, std::int64_t heads) {
  if (dim < 1 || heads < 1 || dim % heads != 0)
    fail(who, "needs dim >= 1 and heads >= 1 dividing dim, got dim=" + std::to_string(dim) +
                  " heads=" + std::to_string(heads));
  return dim / heads;
}

} // namespace

causal_self_attention::causal_self_attention(std::size_t index, std::int64_t dim,
                                             std::int64_t heads, const std::string& prefix)
    : index_(index), who_("causal_self_attention layer " + std::to_string(index)), dim_(dim),
      heads_(heads), head_dim_(checked_head_dim(who_, dim, heads)), local_heads_{0, heads},
      qkv_(std::make_unique<dense>(index, dim, 3 * dim)),
      proj_(std::make_unique<dense>(index, dim, dim)) {
  adopt_parameters(*qkv_, qkv_params(), index, prefix + "qkv.");
  adopt_parameters(*proj_, proj_params(), index, prefix + "proj.");
}

causal_self_attention::causal_self_attention(std::size_t index, std::int64_t dim,
                                             std::int64_t heads, const std::string& prefix,
                                             std::shared_ptr<tp_group> group)
    : index_(index), who_("causal_self_attention layer " + std::to_string(index)), dim_(dim),
      heads_(heads), head_dim_(checked_head_dim(who_, dim, heads)) {
  if (!group)
    fail(who_, "a tensor-parallel attention layer needs a tp_group");
  local_heads_ = tp_split_units(heads, group->size(), group->rank(), who_ + " heads");
  // The rank's features are those of its heads, in q, k and v alike.
  tp_param_split features;
  features.offset = local_heads_.offset * head_dim_;
  features.extent = local_heads_.extent * head_dim_;
  features.full = dim;
  tp_param_split qkv_rows = features;
  qkv_rows.axis = 0;
  qkv_rows.blocks = 3;
  tp_param_split proj_columns = features;
  proj_columns.axis = 1;
  qkv_ = std::make_unique<tp_dense>(index, dim, 3 * dim, qkv_rows, group);
  proj_ = std::make_unique<tp_dense>(index, dim, dim, proj_columns, std::move(group));
  adopt_parameters(*qkv_, qkv_params(), index, prefix + "qkv.");
  adopt_parameters(*proj_, proj_params(), index, prefix + "proj.");
}

nlohmann::json causal_self_attention::spec() const {
  return {{"type", "causal_self_attention"}, {"dim", dim_}, {"heads", heads_}};
}

shape_t causal_self_attention::output_shape(const shape_t& input) const {
  if (input.size() != 2 || input[0] < 1 || input[1] != dim_)
    fail(who_, "expected a per-sample input [T, " + std::to_string(dim_) + "], got " +
                   runtime::to_string(input));
  return input;
}

void causal_self_attention::init(std::uint64_t seed) {
  {
    parameter_loan loan(qkv_params(), *qkv_);
    qkv_->init(seed);
  }
  parameter_loan loan(proj_params(), *proj_);
  proj_->init(seed);
}

tensor causal_self_attention::forward(const tensor& x, const forward_context& ctx) {
  check_input(x, runtime::dtype::f32, 3, who_);
  if (x.rank() != 3 || x.dim(2) != dim_ || x.dim(1) < 1)
    fail(who_, "expected an input [B, T, " + std::to_string(dim_) + "], got " +
                   runtime::to_string(x.shape()));
  // d and nh: the features and heads this layer computes (all unless
  // tensor-parallel); qkv holds [q | k | v] of those heads only.
  const std::int64_t batch = x.dim(0), t = x.dim(1), hd = head_dim_, nh = local_heads_.extent,
                     d = nh * hd;
  tensor qkv;
  {
    parameter_loan loan(qkv_params(), *qkv_);
    qkv = qkv_->forward(x, ctx);
  }
  // Scores for (b, h): Q_bh [T, hd] rows at stride 3*d, K_bh likewise at
  // offset d; the heads of one sample are equally strided, so one batched
  // GEMM per sample covers them.
  tensor probs = tensor::empty(runtime::dtype::f32, {batch, nh, t, t});
  tensor o = tensor::empty(runtime::dtype::f32, {batch, t, d});
  const float* q = qkv.data<float>();
  float* p = probs.mutable_data<float>();
  float* op = o.mutable_data<float>();
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  for (std::int64_t b = 0; b < batch; ++b) {
    const float* qb = q + b * t * 3 * d;
    kc::gemm_strided_batched(kc::trans::no, kc::trans::yes, t, t, hd, scale, qb, 3 * d, hd, qb + d,
                             3 * d, hd, 0.0f, p + b * nh * t * t, t, t * t, nh);
  }
  kc::softmax_rows(p, batch * nh * t, t, true);
  for (std::int64_t b = 0; b < batch; ++b)
    kc::gemm_strided_batched(kc::trans::no, kc::trans::no, t, hd, t, 1.0f, p + b * nh * t * t, t,
                             t * t, q + b * t * 3 * d + 2 * d, 3 * d, hd, 0.0f, op + b * t * d, d,
                             hd, nh);
  tensor y;
  {
    parameter_loan loan(proj_params(), *proj_);
    y = proj_->forward(o, ctx);
  }
  if (ctx.training)
    saved_.put(ctx.mb, saved{std::move(qkv), std::move(probs)});
  return y;
}

tensor causal_self_attention::backward(const tensor& dy, micro_batch_id mb, bool need_input_grad) {
  saved s = saved_.take(mb, who_);
  const std::int64_t batch = s.qkv.dim(0), t = s.qkv.dim(1), hd = head_dim_,
                     nh = local_heads_.extent, d = nh * hd;
  check_grad(dy, {batch, t, dim_}, who_);
  tensor dout;
  {
    parameter_loan loan(proj_params(), *proj_);
    dout = proj_->backward(dy, mb, true);
  }
  tensor dqkv = tensor::empty(runtime::dtype::f32, {batch, t, 3 * d});
  tensor dprobs = tensor::empty(runtime::dtype::f32, {batch, nh, t, t});
  const float* q = s.qkv.data<float>();
  const float* p = s.probs.data<float>();
  const float* dop = dout.data<float>();
  float* dq = dqkv.mutable_data<float>();
  float* dp = dprobs.mutable_data<float>();
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  for (std::int64_t b = 0; b < batch; ++b) {
    const float* pb = p + b * nh * t * t;
    const float* dob = dop + b * t * d;
    const float* vb = q + b * t * 3 * d + 2 * d;
    // dP = dO V^T, dV = P^T dO.
    kc::gemm_strided_batched(kc::trans::no, kc::trans::yes, t, t, hd, 1.0f, dob, d, hd, vb, 3 * d,
                             hd, 0.0f, dp + b * nh * t * t, t, t * t, nh);
    kc::gemm_strided_batched(kc::trans::yes, kc::trans::no, t, hd, t, 1.0f, pb, t, t * t, dob, d,
                             hd, 0.0f, dq + b * t * 3 * d + 2 * d, 3 * d, hd, nh);
  }
  // dS (in place over dP); masked positions get exactly 0.
  kc::softmax_rows_backward(p, dp, dp, batch * nh * t, t);
  for (std::int64_t b = 0; b < batch; ++b) {
    const float* dsb = dp + b * nh * t * t;
    const float* qb = q + b * t * 3 * d;
    float* dqb = dq + b * t * 3 * d;
    // S = scale * Q K^T: dQ = scale * dS K, dK = scale * dS^T Q.
    kc::gemm_strided_batched(kc::trans::no, kc::trans::no, t, hd, t, scale, dsb, t, t * t, qb + d,
                             3 * d, hd, 0.0f, dqb, 3 * d, hd, nh);
    kc::gemm_strided_batched(kc::trans::yes, kc::trans::no, t, hd, t, scale, dsb, t, t * t, qb,
                             3 * d, hd, 0.0f, dqb + d, 3 * d, hd, nh);
  }
  parameter_loan loan(qkv_params(), *qkv_);
  return qkv_->backward(dqkv, mb, need_input_grad);
}

std::size_t causal_self_attention::saved_bytes() const {
  return qkv_->saved_bytes() + proj_->saved_bytes() +
         saved_.total([](const saved& s) { return s.qkv.nbytes() + s.probs.nbytes(); });
}

void causal_self_attention::clear_saved() {
  qkv_->clear_saved();
  proj_->clear_saved();
  saved_.clear();
}

double causal_self_attention::forward_flops(const shape_t& input) const {
  // dl: the features of the heads this layer computes (dim unless
  // tensor-parallel).
  const double t = static_cast<double>(input.at(0)), d = static_cast<double>(dim_),
               dl = static_cast<double>(local_heads_.extent * head_dim_);
  // Projections 2*T*d*(3dl + dl), scores and weighted sum 2 * 2*T*T*dl (the
  // masked half is computed too).
  return 2.0 * t * d * 4.0 * dl + 4.0 * t * t * dl;
}

} // namespace troupe::models
