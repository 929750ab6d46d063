#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <utility>

#include "models/layers/layer.hpp"
#include "models/layers/saved_map.hpp"
#include "models/layers/tp_group.hpp"
#include "models/layers/tp_param_split.hpp"

namespace troupe::models {

/// One tensor-parallel rank's share of a `dense` layer (torch.nn.Linear
/// layout, weight [out, in], bias [out]), split Megatron-style; the names and
/// the initial values of the slice are the unsplit layer's.
///
/// Column-parallel (weight split along axis 0): the rank owns a range of
/// output features (weight rows and bias entries). The input is replicated,
/// so forward needs no communication and yields the rank's output features;
/// backward all-reduces the partial input gradient dy_local W_local (only when
/// need_input_grad, which every rank must pass alike).
///
/// Row-parallel (weight split along axis 1): the rank owns a range of input
/// features (weight columns) and a replicated bias. Its input is the rank's
/// features, as the column partner (and elementwise activations) produced
/// them; forward all-reduces x_local W_local^T and adds the bias once, after
/// the sum, so the output is replicated. Backward needs no communication: the
/// weight gradient comes from the replicated dy and the local input, the bias
/// gradient (dy's column sums) is bitwise the same on every rank, and the
/// input gradient dy W_local covers the rank's features.
///
/// `full_edge` serves a column/row pair cut by a pipeline-stage boundary, so
/// that what crosses the boundary is still the full, replicated activation: a
/// column layer all-gathers its output (and takes its features of the full
/// dy), a row layer takes its features of the full input (and all-gathers its
/// input gradient). The all-gather is an all-reduce of zero-padded slices:
/// exact, at T times the bytes of a dedicated all-gather.
class tp_dense final : public layer {
public:
  enum class role { column, row };

  /// `weight_split` says which part of the full weight [out, in] this rank
  /// holds: axis 0 (column-parallel, may have blocks, e.g. qkv's 3) or axis 1
  /// (row-parallel). Throws std::invalid_argument when it does not fit.
  tp_dense(std::size_t index, std::int64_t in, std::int64_t out, tp_param_split weight_split,
           std::shared_ptr<tp_group> group, bool full_edge = false);

  std::string kind() const override { return "dense"; }
  /// The unsplit layer's spec: the model is the same, only its storage is split.
  nlohmann::json spec() const override;
  /// The local shapes: input and output as this rank's forward takes and gives them.
  shape_t output_shape(const shape_t& input) const override;
  tensor forward(const tensor& x, const forward_context& ctx) override;
  tensor backward(const tensor& dy, micro_batch_id mb, bool need_input_grad) override;
  /// dx now; the weight and bias gradients (a GEMM and a row sum) in
  /// backward_weight, from the input and dy kept until then.
  tensor backward_input(const tensor& dy, micro_batch_id mb, bool need_input_grad) override;
  void backward_weight(micro_batch_id mb) override;
  std::span<parameter> parameters() override { return params_; }
  /// dense's init (U(-1/sqrt(in), 1/sqrt(in)) keyed by the global names) of
  /// the full tensors, keeping this rank's slice: the ranks' slices together
  /// are bitwise the unsplit layer's initial parameters.
  void init(std::uint64_t seed) override;
  std::size_t saved_bytes() const override;
  /// This rank's share of the FLOPs.
  double forward_flops(const shape_t& input) const override;
  void clear_saved() override {
    saved_.clear();
    for_weight_.clear();
  }

  std::size_t index() const noexcept { return index_; }
  role split_role() const noexcept { return role_; }
  const tp_param_split& weight_split() const noexcept { return weight_split_; }
  /// The split of parameter i of parameters() (bias: replicated when row-parallel).
  const tp_param_split& parameter_split(std::size_t i) const { return param_splits_.at(i); }
  std::int64_t in_features() const noexcept { return in_; }
  std::int64_t out_features() const noexcept { return out_; }

private:
  /// The last dimension forward takes and gives.
  std::int64_t input_width() const noexcept;
  std::int64_t output_width() const noexcept;
  /// The split applied to the last dimension of a rank-`rank` activation.
  tp_param_split activation_split(std::size_t rank) const;
  /// all_reduce_sum with a check of what comes back.
  tensor reduce(const tensor& t);
  /// The full activation from every rank's slice (zero-padded all-reduce).
  tensor gather(const tensor& local);

  std::size_t index_;
  std::string who_;
  std::int64_t in_, out_;
  std::int64_t local_in_, local_out_; // the local weight's shape is [local_out_, local_in_]
  tp_param_split weight_split_;
  role role_;
  std::shared_ptr<tp_group> group_;
  bool full_edge_;
  std::array<parameter, 2> params_;            // weight, bias
  std::array<tp_param_split, 2> param_splits_; // their splits
  saved_map<tensor> saved_;                    // the local input
  /// Between backward_input and backward_weight: the local input and dy.
  saved_map<std::pair<tensor, tensor>> for_weight_;

  /// The local input and the local slice of dy, checked against the forward.
  std::pair<tensor, tensor> take_backward(const tensor& dy, micro_batch_id mb);
  void add_weight_grads(const tensor& xl, const tensor& dyl);
  tensor input_grad(const tensor& xl, const tensor& dyl);
};

} // namespace troupe::models
