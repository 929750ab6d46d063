#include "models/zoo.hpp"

#include <stdexcept>

namespace troupe::models {

namespace {

// "transformer": a character language model of data/sherlock.txt. Its
// vocabulary is the fixed table runtime::text_dataset builds from that file
// (its sorted distinct bytes, UTF-8 BOM stripped): 89 ids. Input: i32 ids
// [context] per sample; output: f32 logits [context, vocab] for the next byte
// at every position (train with sequence_cross_entropy, grad scale
// 1 / (global batch * context)). Sized for CPU CI: ~0.1 M parameters.
constexpr std::int64_t lm_vocab = 89;
constexpr std::int64_t lm_context = 64;
constexpr std::int64_t lm_dim = 64;
constexpr std::int64_t lm_heads = 4;
constexpr std::int64_t lm_blocks = 2;

model_spec transformer_lm() {
  model_builder b("transformer");
  b.input({lm_context}, runtime::dtype::i32)
      .embedding(lm_vocab, lm_dim)
      .position_embedding(lm_context, lm_dim);
  for (std::int64_t i = 0; i < lm_blocks; ++i)
    b.transformer_block(lm_dim, lm_heads, 4 * lm_dim);
  return b.layer_norm(lm_dim).dense(lm_dim, lm_vocab).build();
}

} // namespace

std::vector<std::string> zoo_names() {
  return {"mlp", "cnn", "transformer", "mlp_even"};
}

model_spec zoo_model(std::string_view name) {
  if (name == "mlp")
    return model_builder("mlp")
        .input({784})
        .dense(784, 1024)
        .relu()
        .dense(1024, 512)
        .relu()
        .dense(512, 10)
        .build();
  if (name == "cnn")
    return model_builder("cnn")
        .input({1, 28, 28})
        .conv2d(1, 32, 3)
        .relu()
        .flatten()
        .dense(32 * 26 * 26, 128)
        .relu()
        .dense(128, 10)
        .build();
  if (name == "transformer")
    return transformer_lm();
  if (name == "mlp_even") {
    // Equal-cost layers, so that stages cut at block boundaries are
    // balanced and pipeline bubbles can be compared with theory.
    model_builder b("mlp_even");
    b.input({784});
    for (int i = 0; i < 8; ++i)
      b.dense(784, 784).relu();
    return b.dense(784, 10).build();
  }
  std::string known;
  for (const auto& n : zoo_names())
    known += (known.empty() ? "" : ", ") + n;
  throw std::invalid_argument("unknown model '" + std::string{name} + "' (known: " + known + ")");
}

} // namespace troupe::models
