#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "models/layers/model_spec.hpp"

namespace troupe::models {

/// Named reference models:
///   "mlp": input [784] f32: dense 784->1024, relu, dense 1024->512, relu, dense 512->10
///   "cnn": input [1, 28, 28] f32: conv2d 1->32 k3, relu, flatten, dense 21632->128,
///          relu, dense 128->10
///   "transformer": input [64] i32 byte ids of data/sherlock.txt: a decoder-only
///          character language model (embedding, positions, 2 pre-LN blocks of
///          causal self-attention + GELU MLP, LayerNorm, dense 64->89), logits [64, 89]
///   "mlp_even": input [784] f32: 8 x (dense 784->784, relu), dense 784->10: blocks of
///          equal cost, for balanced pipeline stages (bubbles against theory)
/// Unknown names throw std::invalid_argument listing the known ones.
model_spec zoo_model(std::string_view name);
std::vector<std::string> zoo_names();

} // namespace troupe::models
