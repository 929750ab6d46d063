#pragma once

// Autoregressive sampling from a character language model (`troupe
// generate`): the next byte from the model's output at the last position,
// greedy or by temperature and top-k from a counter-based random stream.
// Change it when generation gains a sampling rule.

#include <cstdint>
#include <span>
#include <vector>

#include "models/layers/sequential.hpp"

namespace troupe::models {

struct sampling_options {
  double temperature = 1.0; ///< 0: greedy (the largest logit)
  int top_k = 0;            ///< sample among the k largest logits only (0: all)
  std::uint64_t seed = 0;   ///< the same seed gives the same text
};

/// Picks a token from `logits` (one position's): the argmax at temperature 0,
/// else a draw `u` in [0, 1) from softmax(logits / temperature) restricted to
/// the top_k largest. Ties go to the lower id.
std::int32_t sample_token(std::span<const float> logits, const sampling_options& o, float u);

/// Extends `prompt` (token ids, at least one) by `tokens` ids from `net`, a
/// whole causal sequence model over windows of `context` ids: each step feeds
/// the last `context` ids (a shorter prompt padded behind: causal attention
/// never looks ahead) and samples from the output at the last real position.
/// Returns the new ids only. Deterministic for a seed.
std::vector<std::int32_t> generate_tokens(sequential& net, std::int64_t context,
                                          std::vector<std::int32_t> prompt, std::int64_t tokens,
                                          const sampling_options& o);

} // namespace troupe::models
