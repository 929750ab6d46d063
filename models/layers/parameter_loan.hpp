#pragma once

#include <cstddef>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>

#include "models/layers/init.hpp"
#include "models/layers/layer.hpp"

namespace troupe::models {

/// Lends parameters owned by a composite layer to one of its sub-layers for the
/// duration of a call (forward, backward, init), then takes them back.
///
/// Why: layer::parameters() is a contiguous span, so a composite layer
/// (causal_self_attention, transformer_block) must own all of its parameters
/// in one array, while its sub-layers (dense, layer_norm, ...) each keep theirs
/// in their own array. Instead of re-implementing the sub-layers, the composite
/// moves their parameters out once (adopt_parameters) and swaps them back in
/// around each call. Swapping moves the whole parameter (value, grad,
/// grad_fresh, name): no tensor is copied or shared, so copy on write, the
/// grad_fresh contract and the optimizer's in-place updates are untouched, and
/// the sub-layer keeps only its saved activations between calls. The
/// destructor swaps back, also when the call throws.
class parameter_loan {
public:
  parameter_loan(std::span<parameter> owned, layer& borrower)
      : owned_(owned), borrowed_(borrower.parameters()) {
    if (owned_.size() != borrowed_.size())
      throw std::logic_error("parameter_loan: " + std::to_string(owned_.size()) +
                             " parameters for a " + borrower.kind() + " layer that has " +
                             std::to_string(borrowed_.size()));
    exchange();
  }
  ~parameter_loan() { exchange(); }
  parameter_loan(const parameter_loan&) = delete;
  parameter_loan& operator=(const parameter_loan&) = delete;

private:
  void exchange() noexcept {
    for (std::size_t i = 0; i < owned_.size(); ++i)
      std::swap(owned_[i], borrowed_[i]);
  }

  std::span<parameter> owned_;
  std::span<parameter> borrowed_;
};

/// Moves the parameters of `sub` (built as layer `index`) into `to` and names
/// them "<index>.<prefix><leaf>" ("3.weight" with prefix "mlp.fc1." becomes
/// "3.mlp.fc1.weight"), so names stay globally unique and keep the layer index
/// that partitioners and checkpoints rely on. `sub` keeps empty parameters
/// until a parameter_loan lends them back.
inline void adopt_parameters(layer& sub, std::span<parameter> to, std::size_t index,
                             const std::string& prefix) {
  auto from = sub.parameters();
  if (from.size() != to.size())
    throw std::logic_error("adopt_parameters: size mismatch for a " + sub.kind() + " layer");
  const std::string head = std::to_string(index) + ".";
  for (std::size_t i = 0; i < from.size(); ++i) {
    to[i] = std::move(from[i]);
    from[i] = parameter{};
    std::string leaf = to[i].name.substr(to[i].name.find('.') + 1);
    to[i].name = head + prefix + leaf;
  }
}

} // namespace troupe::models
