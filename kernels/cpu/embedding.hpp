#pragma once

#include <cstdint>

namespace troupe::kernels::cpu {

/// y[i, :] = table[ids[i], :] for n ids; ids outside [0, vocab) throw std::out_of_range.
void embedding_forward(const float* table, std::int64_t vocab, std::int64_t dim,
                       const std::int32_t* ids, std::int64_t n, float* y);
/// dtable[ids[i], :] += dy[i, :] (dtable zeroed first unless accumulate; when
/// accumulating, each row's sum over the call is added whole, see
/// add_inplace).
void embedding_backward(const float* dy, const std::int32_t* ids, std::int64_t n,
                        std::int64_t vocab, std::int64_t dim, float* dtable, bool accumulate);

} // namespace troupe::kernels::cpu
