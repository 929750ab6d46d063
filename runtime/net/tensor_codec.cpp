#include "runtime/net/tensor_codec.hpp"

#include <limits>

#include "runtime/error.hpp"

namespace troupe::runtime {

void validate_tensor_header(const tensor_header& h, std::uint64_t max_bytes) {
  if (h.shape.size() > max_wire_rank)
    throw input_error("tensor rank " + std::to_string(h.shape.size()) + " exceeds the limit of " +
                      std::to_string(max_wire_rank));
  std::uint64_t n = 1;
  for (auto d : h.shape) {
    if (d < 0)
      throw input_error("tensor shape " + to_string(h.shape) + " has a negative extent");
    auto ud = static_cast<std::uint64_t>(d);
    if (ud != 0 && n > std::numeric_limits<std::uint64_t>::max() / ud)
      throw input_error("tensor shape " + to_string(h.shape) + " overflows");
    n *= ud;
  }
  auto esize = element_size(h.type);
  if (n > std::numeric_limits<std::uint64_t>::max() / esize)
    throw input_error("tensor shape " + to_string(h.shape) + " overflows");
  if (n * esize != h.payload_bytes)
    throw input_error("tensor shape " + to_string(h.shape) + " of " +
                      std::string{to_string(h.type)} + " needs " + std::to_string(n * esize) +
                      " bytes but the payload has " + std::to_string(h.payload_bytes));
  if (h.payload_bytes > max_bytes)
    throw input_error("tensor payload of " + std::to_string(h.payload_bytes) +
                      " bytes exceeds the limit of " + std::to_string(max_bytes) +
                      " (troupe.max-tensor-bytes)");
  if (!h.where.is_cpu())
    throw input_error("tensor on " + to_string(h.where) +
                      " cannot be received into host memory directly");
}

tensor_header header_of(const tensor& t) {
  return {t.type(), t.where(), t.shape(), t.nbytes()};
}

} // namespace troupe::runtime
