#include "models/text_sampling.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>

#include "runtime/rng.hpp"

namespace troupe::models {

std::int32_t sample_token(std::span<const float> logits, const sampling_options& o, float u) {
  if (logits.empty())
    throw std::invalid_argument("sample_token: no logits");
  std::vector<std::int32_t> ids(logits.size());
  std::iota(ids.begin(), ids.end(), 0);
  // Largest first, ties by id: the order alone decides greedy and top-k.
  std::stable_sort(ids.begin(), ids.end(),
                   [&](std::int32_t a, std::int32_t b) { return logits[a] > logits[b]; });
  if (o.temperature <= 0)
    return ids.front();
  auto k = ids.size();
  if (o.top_k > 0)
    k = std::min(k, static_cast<std::size_t>(o.top_k));
  std::vector<double> w(k);
  const double top = logits[ids.front()];
  double total = 0;
  for (std::size_t i = 0; i < k; ++i)
    total += w[i] = std::exp((logits[ids[i]] - top) / o.temperature);
  double target = u * total;
  for (std::size_t i = 0; i < k; ++i) {
    target -= w[i];
    if (target < 0)
      return ids[i];
  }
  return ids[k - 1];
}

std::vector<std::int32_t> generate_tokens(sequential& net, std::int64_t context,
                                          std::vector<std::int32_t> prompt, std::int64_t tokens,
                                          const sampling_options& o) {
  if (prompt.empty())
    throw std::invalid_argument("generate_tokens: an empty prompt");
  runtime::rng_stream rng{o.seed, runtime::hash_name("generate")};
  std::vector<std::int32_t> out;
  forward_context ctx;
  ctx.training = false;
  for (std::int64_t t = 0; t < tokens; ++t) {
    const auto n = static_cast<std::int64_t>(prompt.size());
    const auto used = std::min(n, context);
    auto x = runtime::tensor::zeros(runtime::dtype::i32, {1, context});
    std::copy(prompt.end() - used, prompt.end(), x.mutable_data<std::int32_t>());
    auto y = net.forward(x, ctx); // [1, context, vocab]
    const auto vocab = y.dim(2);
    std::span<const float> last{y.data<float>() + (used - 1) * vocab,
                                static_cast<std::size_t>(vocab)};
    const auto id = sample_token(last, o, rng.next_uniform());
    prompt.push_back(id);
    out.push_back(id);
  }
  return out;
}

} // namespace troupe::models
