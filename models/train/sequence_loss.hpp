#pragma once

#include "models/train/loss.hpp"
#include "models/layers/model_spec.hpp"
#include "runtime/tensor.hpp"

namespace troupe::models {

/// Next-token cross-entropy of a language model: logits f32 [B, T, V] against
/// targets i32 [B, T]. The logits are viewed as [B*T, V] (reshape shares the
/// storage) and handed to softmax_cross_entropy; dlogits comes back as
/// [B, T, V]. loss_sum and correct are sums over all B*T predicted tokens.
///
/// Grad scale convention: pass 1 / (global batch * T), one over the number of
/// predicted tokens of the whole step across all micro-batches and replicas,
/// so the gradients add up to those of the mean per-token loss (the sequence
/// analogue of 1/global_batch). Bits per character = loss_sum / tokens / ln 2.
/// Throws std::invalid_argument on wrong shapes or dtypes or targets outside
/// [0, V).
loss_output sequence_cross_entropy(const runtime::tensor& logits, const runtime::tensor& targets,
                                   float grad_scale, bool want_grad);

/// True for a language model: i32 token input [T] and logits [T, V] per
/// sample (a prediction at every position). Training trains it with
/// sequence_cross_entropy on next-token targets [T] and reports its loss per
/// token; every other model is a classifier (softmax_cross_entropy, one label
/// per sample).
bool is_sequence_model(const model_spec& spec);

} // namespace troupe::models
