#include "actors/plan/ps_assignment.hpp"

#include <algorithm>
#include <cstring>
#include <set>
#include <tuple>
#include <utility>

#include "runtime/error.hpp"

namespace troupe::actors {

namespace {

using runtime::input_error;
using runtime::tensor;

constexpr int max_shards = 4096;

/// Model order of each parameter by name.
std::map<std::string, std::size_t> param_order(const ps_assignment& a) {
  std::map<std::string, std::size_t> order;
  for (std::size_t i = 0; i < a.params.size(); ++i)
    order.emplace(a.params[i].name, i);
  return order;
}

void sort_pieces(ps_assignment& a) {
  auto order = param_order(a);
  std::sort(a.pieces.begin(), a.pieces.end(), [&](const ps_piece& x, const ps_piece& y) {
    return std::make_tuple(x.shard, x.stage, order.at(x.param), x.offset) <
           std::make_tuple(y.shard, y.stage, order.at(y.param), y.offset);
  });
}

void check_params(const std::vector<ps_param_info>& params) {
  std::set<std::string> seen;
  for (const auto& p : params) {
    if (p.name.empty())
      throw input_error("ps assignment: a parameter without a name");
    if (p.name.find('@') != std::string::npos)
      throw input_error("ps assignment: parameter name '" + p.name +
                        "' contains '@' (reserved for piece names)");
    if (!seen.insert(p.name).second)
      throw input_error("ps assignment: parameter '" + p.name + "' appears twice");
    if (p.stage < 0)
      throw input_error("ps assignment: parameter '" + p.name + "' has stage " +
                        std::to_string(p.stage));
    if (p.numel < 0)
      throw input_error("ps assignment: parameter '" + p.name + "' has " + std::to_string(p.numel) +
                        " elements");
  }
}

std::uint64_t param_bytes(std::int64_t numel) {
  return static_cast<std::uint64_t>(numel) * sizeof(float);
}

/// The piece that `name` ("<param>" or "<param>@<offset>") names among
/// `by_name`, or nullptr.
const ps_piece* find_piece(const std::map<std::string, const ps_piece*>& by_name,
                           const std::string& name) {
  auto it = by_name.find(name);
  return it == by_name.end() ? nullptr : it->second;
}

/// Splits "<x>.<kind>" at its last dot; {name, ""} when there is none.
std::pair<std::string, std::string> split_kind(const std::string& name) {
  auto dot = name.rfind('.');
  if (dot == std::string::npos || dot == 0 || dot + 1 == name.size())
    return {name, ""};
  return {name.substr(0, dot), name.substr(dot + 1)};
}

void copy_elements(float* dst, const tensor& src, std::int64_t offset, std::int64_t length) {
  if (length > 0)
    std::memcpy(dst, src.data<float>() + offset, static_cast<std::size_t>(length) * sizeof(float));
}

} // namespace

// ---------------------------------------------------------------- ps_piece

std::string ps_piece::name() const {
  return whole ? param : param + "@" + std::to_string(offset);
}

// ----------------------------------------------------------- ps_assignment

std::span<const ps_piece> ps_assignment::pieces_of(int shard, std::int32_t stage) const {
  auto lo = std::lower_bound(pieces.begin(), pieces.end(), std::make_pair(shard, stage),
                             [](const ps_piece& p, const std::pair<int, std::int32_t>& k) {
                               return std::make_pair(static_cast<int>(p.shard), p.stage) < k;
                             });
  auto hi = lo;
  while (hi != pieces.end() && hi->shard == shard && hi->stage == stage)
    ++hi;
  return {lo, hi};
}

std::int64_t ps_assignment::numel_of(int shard, std::int32_t stage) const {
  std::int64_t n = 0;
  for (const auto& p : pieces_of(shard, stage))
    n += p.length;
  return n;
}

std::vector<int> ps_assignment::shards_of_stage(std::int32_t stage) const {
  std::set<int> s;
  for (const auto& p : pieces)
    if (p.stage == stage)
      s.insert(p.shard);
  return {s.begin(), s.end()};
}

std::vector<std::int32_t> ps_assignment::stages_of(int shard) const {
  std::set<std::int32_t> s;
  for (const auto& p : pieces)
    if (p.shard == shard)
      s.insert(p.stage);
  return {s.begin(), s.end()};
}

std::vector<std::uint64_t> ps_assignment::bytes_per_shard() const {
  std::vector<std::uint64_t> out(static_cast<std::size_t>(std::max(shards, 0)), 0);
  for (const auto& p : pieces)
    if (p.shard >= 0 && p.shard < shards)
      out[static_cast<std::size_t>(p.shard)] += param_bytes(p.length);
  return out;
}

const ps_param_info* ps_assignment::find_param(const std::string& name) const {
  for (const auto& p : params)
    if (p.name == name)
      return &p;
  return nullptr;
}

// --------------------------------------------------------------- placement

ps_assignment assign_parameters(const std::vector<ps_param_info>& params, int shards,
                                std::int64_t split_threshold_bytes) {
  if (shards < 1 || shards > max_shards)
    throw input_error("ps assignment: " + std::to_string(shards) + " shards (expected 1 to " +
                      std::to_string(max_shards) + ")");
  if (split_threshold_bytes < 0)
    throw input_error("ps assignment: negative split threshold " +
                      std::to_string(split_threshold_bytes));
  check_params(params);
  ps_assignment a;
  a.shards = shards;
  a.params = params;
  std::vector<std::uint64_t> load(static_cast<std::size_t>(shards), 0);
  std::vector<std::size_t> rest;
  for (std::size_t i = 0; i < params.size(); ++i) {
    const auto& p = params[i];
    if (shards == 1 || param_bytes(p.numel) <= static_cast<std::uint64_t>(split_threshold_bytes)) {
      rest.push_back(i);
      continue;
    }
    // Near-equal contiguous pieces: the first numel % shards get one more.
    const std::int64_t base = p.numel / shards, extra = p.numel % shards;
    std::int64_t offset = 0;
    for (int s = 0; s < shards; ++s) {
      const std::int64_t length = base + (s < extra ? 1 : 0);
      if (length == 0)
        continue;
      a.pieces.push_back({p.name, p.stage, offset, length, s, length == p.numel});
      load[static_cast<std::size_t>(s)] += param_bytes(length);
      offset += length;
    }
    if (p.numel == 0)
      rest.push_back(i); // nothing to split: place it whole like a small one
  }
  std::stable_sort(rest.begin(), rest.end(),
                   [&](std::size_t x, std::size_t y) { return params[x].numel > params[y].numel; });
  for (auto i : rest) {
    const auto& p = params[i];
    auto least = std::min_element(load.begin(), load.end()) - load.begin();
    a.pieces.push_back({p.name, p.stage, 0, p.numel, static_cast<std::int32_t>(least), true});
    load[static_cast<std::size_t>(least)] += param_bytes(p.numel);
  }
  sort_pieces(a);
  return a;
}

void validate(const ps_assignment& a) {
  if (a.shards < 1 || a.shards > max_shards)
    throw input_error("ps assignment: " + std::to_string(a.shards) + " shards");
  check_params(a.params);
  auto order = param_order(a);
  // Per parameter, the pieces' ranges must tile [0, numel).
  std::map<std::string, std::vector<std::pair<std::int64_t, std::int64_t>>> ranges;
  const ps_piece* prev = nullptr;
  for (const auto& p : a.pieces) {
    auto what = "ps assignment: piece '" + p.name() + "'";
    auto it = order.find(p.param);
    if (it == order.end())
      throw input_error(what + " of an unknown parameter");
    const auto& info = a.params[it->second];
    if (p.stage != info.stage)
      throw input_error(what + " has stage " + std::to_string(p.stage) + ", its parameter " +
                        std::to_string(info.stage));
    if (p.shard < 0 || p.shard >= a.shards)
      throw input_error(what + " on shard " + std::to_string(p.shard) + " of " +
                        std::to_string(a.shards));
    if (p.offset < 0 || p.length < 0 || p.offset > info.numel || p.length > info.numel - p.offset)
      throw input_error(what + ": elements [" + std::to_string(p.offset) + ", +" +
                        std::to_string(p.length) + ") outside the parameter's " +
                        std::to_string(info.numel));
    if (p.whole != (p.offset == 0 && p.length == info.numel))
      throw input_error(what + ": 'whole' does not match its range");
    if (prev != nullptr &&
        std::make_tuple(p.shard, p.stage, it->second, p.offset) <=
            std::make_tuple(prev->shard, prev->stage, order.at(prev->param), prev->offset))
      throw input_error(what + " is out of order (or repeated)");
    ranges[p.param].emplace_back(p.offset, p.length);
    prev = &p;
  }
  for (const auto& info : a.params) {
    auto& r = ranges[info.name];
    std::sort(r.begin(), r.end());
    std::int64_t next = 0;
    for (const auto& [offset, length] : r) {
      if (offset != next)
        throw input_error("ps assignment: parameter '" + info.name + "' elements " +
                          (offset > next
                               ? "from " + std::to_string(next) + " have no piece"
                               : "from " + std::to_string(offset) + " are in two pieces"));
      next = offset + length;
    }
    if (next != info.numel || r.empty())
      throw input_error("ps assignment: parameter '" + info.name + "' has " +
                        std::to_string(info.numel) + " elements, its pieces cover " +
                        std::to_string(next));
  }
}

nlohmann::json to_json(const ps_assignment& a) {
  auto params = nlohmann::json::array();
  for (const auto& p : a.params)
    params.push_back({{"name", p.name}, {"stage", p.stage}, {"numel", p.numel}});
  auto pieces = nlohmann::json::array();
  for (const auto& p : a.pieces)
    pieces.push_back({{"param", p.param},
                      {"stage", p.stage},
                      {"offset", p.offset},
                      {"length", p.length},
                      {"shard", p.shard}});
  return {{"shards", a.shards}, {"params", std::move(params)}, {"pieces", std::move(pieces)}};
}

ps_assignment ps_assignment_from_json(const nlohmann::json& j) {
  try {
    ps_assignment a;
    a.shards = j.at("shards").get<int>();
    for (const auto& p : j.at("params"))
      a.params.push_back({p.at("name").get<std::string>(), p.at("stage").get<std::int32_t>(),
                          p.at("numel").get<std::int64_t>()});
    std::map<std::string, std::int64_t> numel;
    for (const auto& p : a.params)
      numel.emplace(p.name, p.numel);
    for (const auto& p : j.at("pieces")) {
      ps_piece x;
      x.param = p.at("param").get<std::string>();
      x.stage = p.at("stage").get<std::int32_t>();
      x.offset = p.at("offset").get<std::int64_t>();
      x.length = p.at("length").get<std::int64_t>();
      x.shard = p.at("shard").get<std::int32_t>();
      auto n = numel.find(x.param);
      x.whole = n != numel.end() && x.offset == 0 && x.length == n->second;
      a.pieces.push_back(std::move(x));
    }
    validate(a);
    return a;
  } catch (const nlohmann::json::exception& e) {
    throw input_error(std::string{"ps assignment: "} + e.what());
  }
}

// ------------------------------------------------------------ flat tensors

tensor flatten_pieces(std::span<const ps_piece> pieces, const ps_tensor_source& source) {
  std::int64_t total = 0;
  for (const auto& p : pieces)
    total += p.length;
  auto check = [](const ps_piece& p, const tensor& t) {
    if (!t.defined())
      return;
    if (t.type() != runtime::dtype::f32 || t.numel() < p.offset + p.length)
      throw input_error("piece '" + p.name() + "' needs f32 elements [" + std::to_string(p.offset) +
                        ", " + std::to_string(p.offset + p.length) + "), its tensor is " +
                        std::string{runtime::to_string(t.type())} + " " +
                        runtime::to_string(t.shape()));
  };
  if (pieces.size() == 1 && pieces[0].whole) {
    auto t = source(pieces[0].param);
    check(pieces[0], t);
    if (t.defined())
      return t.rank() == 1 ? t : t.reshape({t.numel()});
  }
  auto flat = tensor::empty(runtime::dtype::f32, {total});
  float* dst = total > 0 ? flat.mutable_data<float>() : nullptr;
  for (const auto& p : pieces) {
    auto t = source(p.param);
    check(p, t);
    if (t.defined())
      copy_elements(dst, t, p.offset, p.length);
    else
      std::fill_n(dst, p.length, 0.0f);
    dst += p.length;
  }
  return flat;
}

void scatter_pieces(std::span<const ps_piece> pieces, const tensor& flat,
                    const ps_tensor_target& target) {
  std::int64_t total = 0;
  for (const auto& p : pieces)
    total += p.length;
  if (!flat.defined() || flat.type() != runtime::dtype::f32 || flat.numel() != total)
    throw input_error("flat tensor of " + std::to_string(pieces.size()) +
                      " piece(s) must be f32 [" + std::to_string(total) + "], got " +
                      (flat.defined() ? std::string{runtime::to_string(flat.type())} + " " +
                                            runtime::to_string(flat.shape())
                                      : std::string{"an undefined tensor"}));
  const float* src = total > 0 ? flat.data<float>() : nullptr;
  for (const auto& p : pieces) {
    tensor& t = target(p.param);
    if (!t.defined() || t.type() != runtime::dtype::f32 || t.numel() < p.offset + p.length)
      throw input_error("piece '" + p.name() + "' does not fit its parameter's tensor " +
                        (t.defined() ? std::string{runtime::to_string(t.type())} + " " +
                                           runtime::to_string(t.shape())
                                     : std::string{"(undefined)"}));
    if (p.length > 0)
      std::memcpy(t.mutable_data<float>() + p.offset, src,
                  static_cast<std::size_t>(p.length) * sizeof(float));
    src += p.length;
  }
}

// ------------------------------------------------------- gather and resume

namespace {

/// A full tensor being merged from pieces ("<param>" or "<param>.<kind>"),
/// with the elements its pieces filled so far.
struct merged_tensor {
  const ps_param_info* param = nullptr;
  std::string kind;
  tensor value;
  std::int64_t filled = 0;
};

/// Copies shard s's answer into the full tensors of `out`, checking that
/// every name is a piece of that shard (or a piece's state kind), sent once,
/// with the piece's length.
void merge_shard_part(std::map<std::string, merged_tensor>& out, const ps_assignment& a,
                      const std::map<std::string, std::size_t>& order, int s,
                      const runtime::named_tensors& part,
                      const std::map<std::string, runtime::shape_t>& shapes) {
  if (part.names.size() != part.tensors.size())
    throw input_error("merging ps pieces: shard " + std::to_string(s) + " sent " +
                      std::to_string(part.names.size()) + " names for " +
                      std::to_string(part.tensors.size()) + " tensors");
  std::map<std::string, const ps_piece*> by_name;
  for (const auto& p : a.pieces)
    if (p.shard == s)
      by_name.emplace(p.name(), &p);
  std::set<std::string> seen;
  for (std::size_t i = 0; i < part.names.size(); ++i) {
    const auto& name = part.names[i];
    const auto& t = part.tensors[i];
    auto what = "merging ps pieces: '" + name + "' from shard " + std::to_string(s);
    std::string kind;
    const ps_piece* piece = find_piece(by_name, name);
    if (piece == nullptr) {
      auto [prefix, k] = split_kind(name);
      piece = k.empty() ? nullptr : find_piece(by_name, prefix);
      kind = k;
    }
    if (piece == nullptr)
      throw input_error(what + " names no piece of that shard");
    if (!seen.insert(name).second)
      throw input_error(what + " appears twice");
    if (!t.defined() || t.type() != runtime::dtype::f32 || t.numel() != piece->length)
      throw input_error(what + " must be f32 with " + std::to_string(piece->length) + " elements");
    const auto& info = a.params[order.at(piece->param)];
    auto key = kind.empty() ? info.name : info.name + "." + kind;
    auto& f = out[key];
    if (!f.value.defined()) {
      auto shape =
          shapes.count(info.name) != 0 ? shapes.at(info.name) : runtime::shape_t{info.numel};
      if (runtime::shape_numel(shape) != info.numel)
        throw input_error("merging ps pieces: shape " + runtime::to_string(shape) + " of '" +
                          info.name + "' does not hold its " + std::to_string(info.numel) +
                          " elements");
      f.param = &info;
      f.kind = kind;
      f.value = tensor::empty(runtime::dtype::f32, std::move(shape));
    }
    if (piece->length > 0)
      copy_elements(f.value.mutable_data<float>() + piece->offset, t, 0, piece->length);
    f.filled += piece->length;
  }
}

} // namespace

runtime::named_tensors merge_pieces(const ps_assignment& a,
                                    std::span<const runtime::named_tensors> parts,
                                    const std::map<std::string, runtime::shape_t>& shapes) {
  if (static_cast<int>(parts.size()) != a.shards)
    throw input_error("merging ps pieces: " + std::to_string(parts.size()) + " answers from " +
                      std::to_string(a.shards) + " shards");
  std::map<std::string, merged_tensor> out;
  auto order = param_order(a);
  for (int s = 0; s < a.shards; ++s)
    merge_shard_part(out, a, order, s, parts[static_cast<std::size_t>(s)], shapes);
  // Complete tensors only, in model order (then by state kind).
  std::vector<const merged_tensor*> done;
  for (const auto& [key, f] : out) {
    if (f.filled != f.param->numel)
      throw input_error("merging ps pieces: '" + key + "' has " + std::to_string(f.filled) +
                        " of its " + std::to_string(f.param->numel) +
                        " elements (a shard did not send all its pieces)");
    done.push_back(&f);
  }
  // Parameter values are complete only with every parameter; optimizer state
  // may lack parameters that have none (SGD without momentum, no update yet).
  const bool values =
      std::any_of(done.begin(), done.end(), [](const merged_tensor* f) { return f->kind.empty(); });
  for (const auto& info : a.params)
    if (values && out.count(info.name) == 0)
      throw input_error("merging ps pieces: no piece of parameter '" + info.name + "'");
  std::sort(done.begin(), done.end(), [&](const merged_tensor* x, const merged_tensor* y) {
    return std::make_pair(order.at(x->param->name), x->kind) <
           std::make_pair(order.at(y->param->name), y->kind);
  });
  runtime::named_tensors r;
  for (const auto* f : done) {
    r.names.push_back(f->kind.empty() ? f->param->name : f->param->name + "." + f->kind);
    r.tensors.push_back(f->value);
  }
  return r;
}

runtime::named_tensors split_pieces(const ps_assignment& a, int shard,
                                    const runtime::named_tensors& full) {
  if (shard < 0 || shard >= a.shards)
    throw input_error("splitting into ps pieces: shard " + std::to_string(shard) + " of " +
                      std::to_string(a.shards));
  if (full.names.size() != full.tensors.size())
    throw input_error("splitting into ps pieces: " + std::to_string(full.names.size()) +
                      " names for " + std::to_string(full.tensors.size()) + " tensors");
  runtime::named_tensors r;
  r.meta_keys = full.meta_keys;
  r.meta_values = full.meta_values;
  for (std::size_t i = 0; i < full.names.size(); ++i) {
    const auto& name = full.names[i];
    const auto& t = full.tensors[i];
    std::string kind;
    const ps_param_info* info = a.find_param(name);
    if (info == nullptr) {
      auto [prefix, k] = split_kind(name);
      info = k.empty() ? nullptr : a.find_param(prefix);
      kind = k;
    }
    if (info == nullptr)
      throw input_error("splitting into ps pieces: '" + name + "' names no parameter");
    if (!t.defined() || t.type() != runtime::dtype::f32 || t.numel() != info->numel)
      throw input_error("splitting into ps pieces: '" + name + "' must be f32 with " +
                        std::to_string(info->numel) + " elements");
    for (const auto& p : a.pieces_of(shard, info->stage)) {
      if (p.param != info->name)
        continue;
      auto piece = tensor::empty(runtime::dtype::f32, {p.length});
      if (p.length > 0)
        copy_elements(piece.mutable_data<float>(), t, p.offset, p.length);
      r.names.push_back(kind.empty() ? p.name() : p.name() + "." + kind);
      r.tensors.push_back(std::move(piece));
    }
  }
  return r;
}

} // namespace troupe::actors
