#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

#include "models/layers/layer.hpp"
#include "models/layers/saved_map.hpp"

namespace troupe::models {

/// LayerNorm over the last dimension with an affine gamma ("<index>.weight",
/// init 1) and beta ("<index>.bias", init 0), as torch.nn.LayerNorm. Neither
/// gets weight decay. Saves the input and the per-row mean and rstd.
class layer_norm final : public layer {
public:
  layer_norm(std::size_t index, std::int64_t dim, double eps = 1e-5);

  std::string kind() const override { return "layer_norm"; }
  nlohmann::json spec() const override;
  shape_t output_shape(const shape_t& input) const override;
  tensor forward(const tensor& x, const forward_context& ctx) override;
  tensor backward(const tensor& dy, micro_batch_id mb, bool need_input_grad) override;
  std::span<parameter> parameters() override { return params_; }
  void init(std::uint64_t seed) override;
  std::size_t saved_bytes() const override;
  double forward_flops(const shape_t& input) const override;
  void clear_saved() override { saved_.clear(); }

  std::size_t index() const noexcept { return index_; }

private:
  std::size_t index_;
  std::string who_;
  std::int64_t dim_;
  double eps_;
  std::array<parameter, 2> params_; // gamma, beta
  struct saved {
    tensor x, mean, rstd;
  };
  saved_map<saved> saved_;
};

} // namespace troupe::models
