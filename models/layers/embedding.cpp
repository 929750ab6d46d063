#include "models/layers/embedding.hpp"

#include "kernels/cpu/embedding.hpp"
#include "models/layers/checks.hpp"
#include "models/layers/init.hpp"

namespace troupe::models {

namespace kc = kernels::cpu;

embedding::embedding(std::size_t index, std::int64_t vocab, std::int64_t dim)
    : index_(index), who_("embedding layer " + std::to_string(index)), vocab_(vocab), dim_(dim) {
  if (vocab < 1 || dim < 1)
    fail(who_, "needs vocab >= 1 and dim >= 1");
  params_[0] = make_parameter(index, "weight", {vocab, dim}, true);
}

nlohmann::json embedding::spec() const {
  return {{"type", "embedding"}, {"vocab", vocab_}, {"dim", dim_}};
}

shape_t embedding::output_shape(const shape_t& input) const {
  shape_t s = input;
  s.push_back(dim_);
  return s;
}

void embedding::init(std::uint64_t seed) {
  init_normal(params_[0], seed);
}

tensor embedding::forward(const tensor& ids, const forward_context& ctx) {
  check_input(ids, runtime::dtype::i32, 1, who_);
  shape_t ys = ids.shape();
  ys.push_back(dim_);
  tensor y = tensor::empty(runtime::dtype::f32, std::move(ys));
  kc::embedding_forward(params_[0].value.data<float>(), vocab_, dim_, ids.data<std::int32_t>(),
                        ids.numel(), y.mutable_data<float>());
  if (ctx.training)
    saved_.put(ctx.mb, ids);
  return y;
}

tensor embedding::backward(const tensor& dy, micro_batch_id mb, bool) {
  tensor ids = saved_.take(mb, who_);
  check_grad(dy, output_shape(ids.shape()), who_);
  auto& w = params_[0];
  bool acc = prepare_grad(w);
  kc::embedding_backward(dy.data<float>(), ids.data<std::int32_t>(), ids.numel(), vocab_, dim_,
                         w.grad.mutable_data<float>(), acc);
  w.grad_fresh = false;
  return {};
}

std::size_t embedding::saved_bytes() const {
  return saved_.total([](const tensor& t) { return t.nbytes(); });
}

double embedding::forward_flops(const shape_t& input) const {
  return static_cast<double>(runtime::shape_numel(input) * dim_);
}

} // namespace troupe::models
