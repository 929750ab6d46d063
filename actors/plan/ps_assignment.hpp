#pragma once

// Where each parameter lives on the parameter servers (TensorFlow's
// ParameterServerStrategy / ps-lite style): a model's parameters spread over
// S ps shards as contiguous pieces of their flattened elements. Large tensors
// are cut into S near-equal pieces (one per shard) so that no shard carries a
// whole embedding or a big dense layer alone; the rest go whole, greedily, so
// the shards hold about the same bytes. The assignment is plain data: the
// plan holds it, the supervisor sends it to every ps shard and worker, and
// both sides pack a stage's pieces on one shard into one flat f32 tensor in
// the same order (flatten_pieces / scatter_pieces).

#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/named_tensors.hpp"
#include "runtime/tensor.hpp"

namespace troupe::actors {

/// A parameter to place, in model order: its global name, the pipeline stage
/// that holds it and its element count.
struct ps_param_info {
  std::string name;
  std::int32_t stage = 0;
  std::int64_t numel = 0;

  friend bool operator==(const ps_param_info&, const ps_param_info&) = default;
};

/// Elements [offset, offset + length) of a parameter's flattened elements,
/// held by ps shard `shard`.
struct ps_piece {
  std::string param;
  std::int32_t stage = 0;
  std::int64_t offset = 0;
  std::int64_t length = 0;
  std::int32_t shard = 0;
  /// The piece is the whole parameter (not split).
  bool whole = true;

  /// "<param>" for a whole parameter, "<param>@<offset>" for a split one: the
  /// name a ps shard gives the piece's values (get_params_atom) and optimizer
  /// state ("<piece name>.exp_avg").
  std::string name() const;

  friend bool operator==(const ps_piece&, const ps_piece&) = default;
};

struct ps_assignment {
  int shards = 1;
  /// Every parameter, in model order.
  std::vector<ps_param_info> params;
  /// Sorted by (shard, stage, parameter's model order, offset): the pieces of
  /// one (shard, stage) are contiguous and in the order of their flat tensor.
  std::vector<ps_piece> pieces;

  /// The pieces of `stage` on `shard`, in flat order (empty if none).
  std::span<const ps_piece> pieces_of(int shard, std::int32_t stage) const;
  /// Elements of `stage` on `shard` (the length of their flat tensor).
  std::int64_t numel_of(int shard, std::int32_t stage) const;
  /// The shards holding pieces of `stage`, ascending.
  std::vector<int> shards_of_stage(std::int32_t stage) const;
  /// The stages with pieces on `shard`, ascending.
  std::vector<std::int32_t> stages_of(int shard) const;
  /// f32 bytes held by each shard.
  std::vector<std::uint64_t> bytes_per_shard() const;
  /// The parameter `name`, or nullptr.
  const ps_param_info* find_param(const std::string& name) const;

  friend bool operator==(const ps_assignment&, const ps_assignment&) = default;
};

/// Places `params` (model order) on `shards` shards. Parameters of more than
/// `split_threshold_bytes` (as f32) are split into `shards` near-equal
/// contiguous pieces, piece i on shard i (empty pieces of tiny tensors are
/// left out); the others go whole, largest first (model order among equals),
/// onto the shard holding the fewest bytes so far (the lowest among equals).
/// Deterministic. Throws runtime::input_error for shards outside [1, 4096], a
/// negative threshold, an empty, duplicate or '@'-containing name, a negative
/// stage or element count.
ps_assignment assign_parameters(const std::vector<ps_param_info>& params, int shards,
                                std::int64_t split_threshold_bytes);

/// Checks that the pieces cover every parameter exactly once, lie on
/// existing shards, agree with their parameter's stage and are sorted as
/// ps_assignment::pieces promises; throws runtime::input_error naming the
/// first problem.
void validate(const ps_assignment& a);

/// {"shards": S, "params": [{"name", "stage", "numel"}...],
///  "pieces": [{"param", "stage", "offset", "length", "shard"}...]}.
nlohmann::json to_json(const ps_assignment& a);
/// Parses and validates (throws runtime::input_error).
ps_assignment ps_assignment_from_json(const nlohmann::json& j);

/// A parameter's tensor by name; an undefined tensor reads as zeros.
using ps_tensor_source = std::function<runtime::tensor(const std::string& param)>;
/// A parameter's tensor to write into by name (written through mutable_data,
/// so storage shared with anyone else is copied first).
using ps_tensor_target = std::function<runtime::tensor&(const std::string& param)>;

/// The pieces' elements, one after the other, as one flat f32 tensor. A single
/// whole piece of a defined tensor is that tensor reshaped (no copy). Throws
/// runtime::input_error for a tensor that is not f32 or too short.
runtime::tensor flatten_pieces(std::span<const ps_piece> pieces, const ps_tensor_source& source);
/// The inverse: writes `flat` (f32, the pieces' total length) into each
/// piece's range of its parameter's tensor. Throws runtime::input_error for a
/// length, dtype or range that does not match.
void scatter_pieces(std::span<const ps_piece> pieces, const runtime::tensor& flat,
                    const ps_tensor_target& target);

/// Reassembles full tensors from every shard's piece-named tensors: `parts[i]`
/// is what ps shard i answered to get_params_atom ("<piece>") or to
/// get_state_atom ("<piece>.<state kind>"). Returns "<param>" (or
/// "<param>.<state kind>") tensors in model order, shaped by `shapes` (flat
/// where a parameter has no entry), bitwise the pieces' bytes; meta is left
/// empty (each shard reports its own versions and step counts). Throws
/// runtime::input_error for a missing, unknown, duplicate or mis-sized piece,
/// or parts.size() != shards.
runtime::named_tensors merge_pieces(const ps_assignment& a,
                                    std::span<const runtime::named_tensors> parts,
                                    const std::map<std::string, runtime::shape_t>& shapes);
/// The inverse, for resuming: shard `shard`'s piece-named tensors cut from
/// full "<param>" / "<param>.<state kind>" tensors (meta copied). Tensors of
/// parameters with no piece on the shard are skipped; unknown names or wrong
/// sizes throw runtime::input_error.
runtime::named_tensors split_pieces(const ps_assignment& a, int shard,
                                    const runtime::named_tensors& full);

} // namespace troupe::actors
