#include "models/layers/sequential.hpp"

#include <stdexcept>

#include "models/layers/dense.hpp"
#include "models/layers/relu.hpp"

namespace troupe::models {

sequential::sequential(std::vector<std::unique_ptr<layer>> layers) : layers_(std::move(layers)) {
  for (const auto& l : layers_)
    if (!l)
      throw std::invalid_argument("sequential: null layer");
}

sequential::sequential(const model_spec& spec, std::size_t begin, std::size_t end,
                       std::uint64_t seed)
    : layers_(instantiate(spec, begin, end, seed)) {}

tensor sequential::forward(const tensor& x, const forward_context& ctx) {
  tensor h = x;
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    // dense then relu: one pass over the GEMM's output (bitwise the same).
    auto* d = dynamic_cast<dense*>(layers_[i].get());
    auto* r = i + 1 < layers_.size() ? dynamic_cast<relu*>(layers_[i + 1].get()) : nullptr;
    if (d && r) {
      h = d->forward_relu(h, ctx);
      r->keep_output(h, ctx);
      ++i;
      continue;
    }
    h = layers_[i]->forward(h, ctx);
  }
  return h;
}

tensor sequential::backward(const tensor& dy, micro_batch_id mb, bool need_input_grad) {
  return backward(dy, mb, need_input_grad, {});
}

tensor sequential::backward(const tensor& dy, micro_batch_id mb, bool need_input_grad,
                            const std::function<void(std::size_t)>& after_layer,
                            std::optional<float> sgd_lr) {
  if (layers_.empty())
    return need_input_grad ? dy : tensor{};
  tensor g = dy;
  for (std::size_t i = layers_.size(); i-- > 0;) {
    const bool need = i == 0 ? need_input_grad : true;
    auto* d = sgd_lr ? dynamic_cast<dense*>(layers_[i].get()) : nullptr;
    g = d ? d->backward_sgd(g, mb, need, *sgd_lr) : layers_[i]->backward(g, mb, need);
    if (after_layer)
      after_layer(i);
  }
  return g;
}

tensor sequential::backward_input(const tensor& dy, micro_batch_id mb, bool need_input_grad) {
  if (layers_.empty())
    return need_input_grad ? dy : tensor{};
  tensor g = dy;
  for (std::size_t i = layers_.size(); i-- > 0;)
    g = layers_[i]->backward_input(g, mb, i == 0 ? need_input_grad : true);
  return g;
}

void sequential::backward_weight(micro_batch_id mb,
                                 const std::function<void(std::size_t)>& after_layer) {
  for (std::size_t i = layers_.size(); i-- > 0;) {
    layers_[i]->backward_weight(mb);
    if (after_layer)
      after_layer(i);
  }
}

std::vector<parameter*> sequential::parameters() {
  std::vector<parameter*> ps;
  for (auto& l : layers_)
    for (auto& p : l->parameters())
      ps.push_back(&p);
  return ps;
}

std::map<std::string, parameter*> sequential::named_parameters() {
  std::map<std::string, parameter*> m;
  for (auto& l : layers_)
    for (auto& p : l->parameters())
      m.emplace(p.name, &p);
  return m;
}

parameter* sequential::find_parameter(std::string_view name) {
  for (auto& l : layers_)
    for (auto& p : l->parameters())
      if (p.name == name)
        return &p;
  return nullptr;
}

void sequential::zero_grad() {
  for (auto& l : layers_)
    for (auto& p : l->parameters())
      p.grad_fresh = true;
}

std::size_t sequential::saved_bytes() const {
  std::size_t n = 0;
  for (const auto& l : layers_)
    n += l->saved_bytes();
  return n;
}

void sequential::clear_saved() {
  for (auto& l : layers_)
    l->clear_saved();
}

std::int64_t sequential::parameter_count() const {
  std::int64_t n = 0;
  for (const auto& l : layers_)
    for (const auto& p : l->parameters())
      n += p.value.numel();
  return n;
}

} // namespace troupe::models
