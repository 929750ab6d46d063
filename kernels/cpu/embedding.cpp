#include "kernels/cpu/embedding.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cpu/elementwise.hpp"

namespace troupe::kernels::cpu {
namespace {
// Validate all ids before touching the output, so a bad batch changes nothing.
void check_ids(const std::int32_t* ids, std::int64_t n, std::int64_t vocab) {
  for (std::int64_t i = 0; i < n; ++i)
    if (ids[i] < 0 || ids[i] >= vocab)
      throw std::out_of_range("embedding: id " + std::to_string(ids[i]) + " at position " +
                              std::to_string(i) + " outside [0, " + std::to_string(vocab) + ")");
}
} // namespace

void embedding_forward(const float* table, std::int64_t vocab, std::int64_t dim,
                       const std::int32_t* ids, std::int64_t n, float* y) {
  check_ids(ids, n, vocab);
  for (std::int64_t i = 0; i < n; ++i) {
    const float* row = table + static_cast<std::int64_t>(ids[i]) * dim;
    std::copy(row, row + dim, y + i * dim);
  }
}

void embedding_backward(const float* dy, const std::int32_t* ids, std::int64_t n,
                        std::int64_t vocab, std::int64_t dim, float* dtable, bool accumulate) {
  check_ids(ids, n, vocab);
  if (!accumulate)
    std::fill(dtable, dtable + vocab * dim, 0.f);
  // Accumulating, each touched row's sum over this call is formed whole in
  // scratch, then added (add_inplace); only touched rows get scratch.
  std::vector<std::int64_t> slot(static_cast<std::size_t>(accumulate ? vocab : 0), -1);
  std::vector<std::int32_t> rows;
  if (accumulate)
    for (std::int64_t i = 0; i < n; ++i)
      if (slot[static_cast<std::size_t>(ids[i])] < 0) {
        slot[static_cast<std::size_t>(ids[i])] = static_cast<std::int64_t>(rows.size());
        rows.push_back(ids[i]);
      }
  std::vector<float> sums(rows.size() * static_cast<std::size_t>(dim), 0.f);
  for (std::int64_t i = 0; i < n; ++i) {
    float* __restrict out = accumulate ? sums.data() + slot[static_cast<std::size_t>(ids[i])] * dim
                                       : dtable + static_cast<std::int64_t>(ids[i]) * dim;
    const float* __restrict in = dy + i * dim;
    for (std::int64_t c = 0; c < dim; ++c)
      out[c] += in[c];
  }
  for (std::size_t k = 0; k < rows.size(); ++k)
    add_inplace(dtable + static_cast<std::int64_t>(rows[k]) * dim,
                sums.data() + static_cast<std::int64_t>(k) * dim, dim);
}

} // namespace troupe::kernels::cpu
