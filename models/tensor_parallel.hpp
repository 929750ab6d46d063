#pragma once

// Megatron-style tensor (intra-layer) parallelism of a model_spec: which
// parameters T ranks split and how (the layout), a builder of one rank's
// layers, and slicing/merging of named tensors between the unsplit model and
// its T shards (checkpoints, resume, equivalence checks).
//
// What splits is a pure function of the spec and T, decided once:
// - dense layers pair up: a dense followed, through only elementwise
//   activations (relu, gelu), by another dense is a column-parallel /
//   row-parallel pair (tp_dense_pairs). The first splits its output features
//   (weight rows, bias), the second its input features (weight columns; its
//   bias is replicated and added once, after the all-reduce). Pairing is
//   greedy from the front, and a row layer never starts another pair: in the
//   zoo "mlp" (dense relu dense relu dense) layers 0 and 2 pair, layer 4
//   stays whole. An unpaired dense is replicated.
// - causal_self_attention splits whole heads: qkv rows of the rank's heads
//   (in q, k and v), proj columns of those heads; proj.bias replicated.
// - transformer_block splits heads as above and hidden units (mlp.fc1 rows and
//   bias, mlp.fc2 columns; mlp.fc2.bias replicated); ln1, ln2 replicated.
// - everything else (embedding, position_embedding, layer_norm, conv2d,
//   pooling, activations, dropout) is replicated.
// Units split in rank order, the first (units % T) ranks one more
// (tp_split_units); a split that would leave a rank nothing throws
// std::invalid_argument naming the layer. With T == 1 nothing splits.
//
// Activations between layers are replicated, identical on every rank, except
// inside a column/row pair (between them each rank holds its features). So a
// pipeline stage's input and output are always the full activation: when a
// stage boundary cuts a pair, the column layer all-gathers its output and the
// row layer slices its input (tp_dense's full_edge). Any [begin, end) works
// and the layout does not depend on the stage boundaries; cutting a pair
// costs two extra all-reduces per micro-batch, so partitioners should avoid it.

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "models/layers/model_spec.hpp"
#include "models/train/optimizer.hpp"
#include "models/layers/sequential.hpp"
#include "models/layers/tp_group.hpp"
#include "models/layers/tp_param_split.hpp"
#include "models/layers/tp_range.hpp"

namespace troupe::models {

/// For every parameter name of a model, each rank's split (index = rank).
using tp_layout_map = std::map<std::string, std::vector<tp_param_split>>;

/// The column/row dense pairs of `spec` (column index, row index), in order.
/// Independent of T.
std::vector<std::pair<std::size_t, std::size_t>> tp_dense_pairs(const model_spec& spec);

/// Whether T = `tp` ranks split any parameter of `spec` (tp > 1 and the model
/// has a dense pair, an attention layer or a transformer block). Does not
/// check that the splits are possible (tp_layout does).
bool tp_splits_anything(const model_spec& spec, int tp);

/// Every parameter of the model with each of the `tp` ranks' split (see the
/// top of this file). Throws std::invalid_argument for an invalid spec,
/// tp < 1, or a split that would give a rank no unit (naming the layer).
tp_layout_map tp_layout(const model_spec& spec, int tp);

/// The splits of a parameter or of one of its optimizer state tensors
/// ("<param>.<slot>", e.g. "3.attn.qkv.weight.exp_avg", takes its
/// parameter's split), or nullptr when `name` is neither.
const std::vector<tp_param_split>* tp_find_splits(const tp_layout_map& layout,
                                                  std::string_view name);

/// The parameters whose gradients rank `rank` adds to a global gradient norm
/// (grad_clip's sum_of_squares): its split parameters, and the replicated
/// ones on rank 0 only, so that every element of the model counts once when
/// the ranks' sums are added. Throws std::invalid_argument naming a parameter
/// the layout does not know.
std::vector<parameter*> tp_norm_parameters(std::span<parameter* const> params,
                                           const tp_layout_map& layout, int rank);

/// Builds and initialises layers [begin, end) of `spec` as rank
/// group->rank() of group->size() holds them: split layers hold only their
/// slice, under the global names, with the values the unsplit model gets from
/// `seed` (so the ranks' slices concatenated are bitwise instantiate()'s).
/// Their forward and backward call `group` (every rank must run the same
/// layers in the same order). With a group of size 1 the result is
/// instantiate()'s. Throws std::invalid_argument for an invalid spec or
/// range, a null group, or an impossible split.
sequential instantiate_tensor_parallel(const model_spec& spec, std::size_t begin, std::size_t end,
                                       std::uint64_t seed, std::shared_ptr<tp_group> group);

/// Rank `rank`'s slices of full (unsplit) tensors: parameters and optimizer
/// state by name; replicated ones are passed through (storage shared).
/// Throws std::invalid_argument naming the tensor for an unknown name or a
/// shape that does not fit, or for a rank outside the layout.
named_tensors tp_slice(const tp_layout_map& layout, int rank, const named_tensors& full);

/// The full tensors from every rank's slices (per_rank[r] from rank r, e.g.
/// its parameters or optimizer state, the same names on every rank):
/// split tensors are concatenated along their axis in rank order, replicated
/// ones taken from rank 0. Keeps rank 0's order. Throws std::invalid_argument
/// naming the tensor for an unknown or missing name, a dtype or shape
/// mismatch, or per_rank.size() different from the layout's rank count.
named_tensors tp_merge(const tp_layout_map& layout, const std::vector<named_tensors>& per_rank);

} // namespace troupe::models
