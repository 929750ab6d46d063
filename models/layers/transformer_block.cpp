#include "models/layers/transformer_block.hpp"

#include "kernels/cpu/elementwise.hpp"
#include "models/layers/checks.hpp"
#include "models/layers/dense.hpp"
#include "models/layers/parameter_loan.hpp"
#include "models/layers/tp_dense.hpp"

namespace troupe::models {

namespace kc = kernels::cpu;

namespace {

// Slices of params_: [begin, begin + count).
constexpr std::size_t ln1_at = 0, attn_at = 2, ln2_at = 6, fc1_at = 8, fc2_at = 10;

/// The hidden units a tensor-parallel rank owns. Checks the heads split first,
/// so errors name the block (as tp_layout's do), not its attention.
tp_range hidden_units_of(const std::string& who, std::int64_t heads, std::int64_t hidden,
                         const tp_group* group) {
  if (!group)
    fail(who, "a tensor-parallel transformer block needs a tp_group");
  tp_split_units(heads, group->size(), group->rank(), who + " heads");
  return tp_split_units(hidden, group->size(), group->rank(), who + " hidden units");
}

/// a += b (a is a fresh tensor only this block holds, so no copy happens).
void add_into(tensor& a, const tensor& b) {
  kc::add_inplace(a.mutable_data<float>(), b.data<float>(), a.numel());
}

} // namespace

transformer_block::transformer_block(std::size_t index, std::int64_t dim, std::int64_t heads,
                                     std::int64_t hidden)
    : index_(index), who_("transformer_block layer " + std::to_string(index)), dim_(dim),
      heads_(heads), hidden_(hidden), local_hidden_{0, hidden}, ln1_(index, dim),
      attn_(index, dim, heads, "attn."), ln2_(index, dim),
      fc1_(std::make_unique<dense>(index, dim, hidden)), act_(index),
      fc2_(std::make_unique<dense>(index, hidden, dim)) {
  adopt_sub_layers();
}

transformer_block::transformer_block(std::size_t index, std::int64_t dim, std::int64_t heads,
                                     std::int64_t hidden, std::shared_ptr<tp_group> group)
    : index_(index), who_("transformer_block layer " + std::to_string(index)), dim_(dim),
      heads_(heads), hidden_(hidden),
      local_hidden_(hidden_units_of(who_, heads, hidden, group.get())), ln1_(index, dim),
      attn_(index, dim, heads, "attn.", group), ln2_(index, dim), act_(index) {
  tp_param_split hidden_split;
  hidden_split.offset = local_hidden_.offset;
  hidden_split.extent = local_hidden_.extent;
  hidden_split.full = hidden;
  tp_param_split fc1_rows = hidden_split;
  fc1_rows.axis = 0;
  tp_param_split fc2_columns = hidden_split;
  fc2_columns.axis = 1;
  fc1_ = std::make_unique<tp_dense>(index, dim, hidden, fc1_rows, group);
  fc2_ = std::make_unique<tp_dense>(index, hidden, dim, fc2_columns, std::move(group));
  adopt_sub_layers();
}

void transformer_block::adopt_sub_layers() {
  adopt_parameters(ln1_, slice(ln1_at, 2), index_, "ln1.");
  adopt_parameters(attn_, slice(attn_at, 4), index_, "");
  adopt_parameters(ln2_, slice(ln2_at, 2), index_, "ln2.");
  adopt_parameters(*fc1_, slice(fc1_at, 2), index_, "mlp.fc1.");
  adopt_parameters(*fc2_, slice(fc2_at, 2), index_, "mlp.fc2.");
}

nlohmann::json transformer_block::spec() const {
  return {{"type", "transformer_block"}, {"dim", dim_}, {"heads", heads_}, {"hidden", hidden_}};
}

shape_t transformer_block::output_shape(const shape_t& input) const {
  if (input.size() != 2 || input[0] < 1 || input[1] != dim_)
    fail(who_, "expected a per-sample input [T, " + std::to_string(dim_) + "], got " +
                   runtime::to_string(input));
  return input;
}

void transformer_block::init(std::uint64_t seed) {
  {
    parameter_loan l(slice(ln1_at, 2), ln1_);
    ln1_.init(seed);
  }
  {
    parameter_loan l(slice(attn_at, 4), attn_);
    attn_.init(seed);
  }
  {
    parameter_loan l(slice(ln2_at, 2), ln2_);
    ln2_.init(seed);
  }
  {
    parameter_loan l(slice(fc1_at, 2), *fc1_);
    fc1_->init(seed);
  }
  parameter_loan l(slice(fc2_at, 2), *fc2_);
  fc2_->init(seed);
}

tensor transformer_block::forward(const tensor& x, const forward_context& ctx) {
  check_input(x, runtime::dtype::f32, 3, who_);
  if (x.rank() != 3 || x.dim(2) != dim_)
    fail(who_, "expected an input [B, T, " + std::to_string(dim_) + "], got " +
                   runtime::to_string(x.shape()));
  tensor h;
  {
    tensor a;
    {
      parameter_loan l(slice(ln1_at, 2), ln1_);
      a = ln1_.forward(x, ctx);
    }
    {
      parameter_loan l(slice(attn_at, 4), attn_);
      h = attn_.forward(a, ctx);
    }
  }
  add_into(h, x); // h = x + attn(ln1(x))
  tensor m;
  {
    parameter_loan l(slice(ln2_at, 2), ln2_);
    m = ln2_.forward(h, ctx);
  }
  {
    parameter_loan l(slice(fc1_at, 2), *fc1_);
    m = fc1_->forward(m, ctx);
  }
  m = act_.forward(m, ctx);
  {
    parameter_loan l(slice(fc2_at, 2), *fc2_);
    m = fc2_->forward(m, ctx);
  }
  add_into(m, h); // y = h + mlp(ln2(h))
  return m;
}

tensor transformer_block::backward(const tensor& dy, micro_batch_id mb, bool need_input_grad) {
  // Through the MLP branch; dL/dh = dy + what comes back through ln2.
  tensor g;
  {
    parameter_loan l(slice(fc2_at, 2), *fc2_);
    g = fc2_->backward(dy, mb, true);
  }
  g = act_.backward(g, mb, true);
  {
    parameter_loan l(slice(fc1_at, 2), *fc1_);
    g = fc1_->backward(g, mb, true);
  }
  tensor dh;
  {
    parameter_loan l(slice(ln2_at, 2), ln2_);
    dh = ln2_.backward(g, mb, true);
  }
  add_into(dh, dy);
  // Through the attention branch; dL/dx = dh + what comes back through ln1.
  {
    parameter_loan l(slice(attn_at, 4), attn_);
    g = attn_.backward(dh, mb, true);
  }
  tensor dx;
  {
    parameter_loan l(slice(ln1_at, 2), ln1_);
    dx = ln1_.backward(g, mb, need_input_grad);
  }
  if (!need_input_grad)
    return {};
  add_into(dx, dh);
  return dx;
}

std::size_t transformer_block::saved_bytes() const {
  return ln1_.saved_bytes() + attn_.saved_bytes() + ln2_.saved_bytes() + fc1_->saved_bytes() +
         act_.saved_bytes() + fc2_->saved_bytes();
}

void transformer_block::clear_saved() {
  ln1_.clear_saved();
  attn_.clear_saved();
  ln2_.clear_saved();
  fc1_->clear_saved();
  act_.clear_saved();
  fc2_->clear_saved();
}

double transformer_block::forward_flops(const shape_t& input) const {
  // hid: the hidden units this layer computes (all unless tensor-parallel).
  const double t = static_cast<double>(input.at(0)), d = static_cast<double>(dim_),
               hid = static_cast<double>(local_hidden_.extent);
  return ln1_.forward_flops(input) + attn_.forward_flops(input) + ln2_.forward_flops(input) +
         4.0 * t * d * hid + act_.forward_flops({input.at(0), local_hidden_.extent}) + 2.0 * t * d;
}

} // namespace troupe::models
