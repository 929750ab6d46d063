#include "runtime/storage.hpp"

#include <cstdlib>
#include <new>
#include <stdexcept>

namespace troupe::runtime {

std::shared_ptr<storage> storage::allocate(std::size_t bytes, device dev) {
  if (!dev.is_cpu())
    throw std::invalid_argument("storage::allocate: only CPU memory is allocated here, not " +
                                to_string(dev));
  // aligned_alloc needs a size that is a multiple of the alignment.
  std::size_t rounded = (bytes + alignment - 1) / alignment * alignment;
  void* p = std::aligned_alloc(alignment, rounded == 0 ? alignment : rounded);
  if (p == nullptr)
    throw std::bad_alloc{};
  return std::shared_ptr<storage>(new storage(p, bytes, dev));
}

storage::~storage() { std::free(data_); }

} // namespace troupe::runtime
