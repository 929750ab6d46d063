// A user's own layer in a cluster: this program registers a custom layer type,
// "scaled_tanh" {scale} (y = scale * tanh(x)), and then is troupe's command
// line, so the same binary runs as a node, a supervisor or a client:
//   custom_layer_node supervisor --listen 127.0.0.1:7000 --insecure-plain ...
//   custom_layer_node node --supervisor 127.0.0.1:7000 --insecure-plain ...
//   custom_layer_node train --supervisor 127.0.0.1:7000 --model custom.json ...
// with custom.json using {"type": "scaled_tanh", "scale": 1.5} like any layer
// (docs/models.md). Every process that builds the model's layers needs the
// registration: the supervisor (planning), the nodes (training) and the
// client (it checks the file). A program that is only ever a node can end
// with `return troupe::run_node(argc, argv);` (argv then holds the node's flags).

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>

#include "apps/troupe/entry_points.hpp"
#include "models/layers/layer.hpp"
#include "models/layers/layer_registry.hpp"
#include "models/layers/saved_map.hpp"

using namespace troupe;

namespace {

/// y = scale * tanh(x), element-wise; backward needs y: dy * (scale - y^2 / scale).
class scaled_tanh final : public models::layer {
public:
  scaled_tanh(std::size_t index, double scale)
      : scale_(scale), who_("scaled_tanh layer " + std::to_string(index)) {}

  std::string kind() const override { return "scaled_tanh"; }
  nlohmann::json spec() const override { return {{"type", "scaled_tanh"}, {"scale", scale_}}; }
  models::shape_t output_shape(const models::shape_t& input) const override { return input; }

  models::tensor forward(const models::tensor& x, const models::forward_context& ctx) override {
    auto y = models::tensor::empty(runtime::dtype::f32, x.shape());
    const float* in = x.data<float>();
    float* out = y.mutable_data<float>();
    const auto s = static_cast<float>(scale_);
    for (std::int64_t i = 0; i < x.numel(); ++i)
      out[i] = s * std::tanh(in[i]);
    if (ctx.training)
      saved_.put(ctx.mb, y);
    return y;
  }

  models::tensor backward(const models::tensor& dy, models::micro_batch_id mb,
                          bool need_input_grad) override {
    auto y = saved_.take(mb, who_);
    if (!need_input_grad)
      return {};
    auto dx = models::tensor::empty(runtime::dtype::f32, y.shape());
    const float* g = dy.data<float>();
    const float* yv = y.data<float>();
    float* out = dx.mutable_data<float>();
    const auto s = static_cast<float>(scale_);
    for (std::int64_t i = 0; i < y.numel(); ++i)
      out[i] = g[i] * (s - yv[i] * yv[i] / s);
    return dx;
  }

  std::size_t saved_bytes() const override {
    return saved_.total([](const models::tensor& t) { return t.nbytes(); });
  }
  double forward_flops(const models::shape_t& input) const override {
    return 10.0 * static_cast<double>(runtime::shape_numel(input));
  }
  void clear_saved() override { saved_.clear(); }

private:
  double scale_;
  std::string who_;
  models::saved_map<models::tensor> saved_; // the output
};

/// The factory: checks the spec's fields with the registry's readers, so a
/// typo or a bad value fails with "layer I (scaled_tanh): field 'scale' ...".
std::unique_ptr<models::layer> make_scaled_tanh(const nlohmann::json& spec, std::size_t index) {
  models::spec_allow_only(spec, index, {"scale"});
  const double one = 1.0;
  return std::make_unique<scaled_tanh>(
      index, models::spec_number(spec, index, "scale", 1e-3, 1e3, true, &one));
}

} // namespace

int main(int argc, char** argv) {
  models::register_layer("scaled_tanh", make_scaled_tanh);
  return troupe::run_cli(argc, argv);
}
