#include "runtime/tensor.hpp"

#include <cmath>
#include <cstring>
#include <limits>

#include "runtime/copy_meter.hpp"

namespace troupe::runtime {

std::int64_t shape_numel(const shape_t& s) {
  std::int64_t n = 1;
  for (auto d : s) {
    if (d < 0)
      throw std::invalid_argument("negative extent in shape " + to_string(s));
    if (d != 0 && n > std::numeric_limits<std::int64_t>::max() / d)
      throw std::invalid_argument("shape " + to_string(s) + " overflows int64");
    n *= d;
  }
  return n;
}

std::string to_string(const shape_t& s) {
  std::string r = "[";
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (i)
      r += ", ";
    r += std::to_string(s[i]);
  }
  return r + "]";
}

tensor tensor::empty(dtype t, shape_t shape, device dev) {
  auto n = shape_numel(shape);
  auto s = storage::allocate(static_cast<std::size_t>(n) * element_size(t), dev);
  return tensor{std::move(s), t, std::move(shape), n};
}

tensor tensor::zeros(dtype t, shape_t shape, device dev) {
  auto r = empty(t, std::move(shape), dev);
  if (r.nbytes())
    std::memset(r.storage_->data(), 0, r.nbytes());
  return r;
}

tensor tensor::wrap(std::shared_ptr<storage> s, dtype t, shape_t shape) {
  auto n = shape_numel(shape);
  if (!s || s->size_bytes() < static_cast<std::size_t>(n) * element_size(t))
    throw std::invalid_argument("tensor::wrap: storage smaller than shape " + to_string(shape));
  return tensor{std::move(s), t, std::move(shape), n};
}

void tensor::check_access(dtype expected) const {
  if (!storage_)
    throw std::logic_error("access to an undefined tensor");
  if (expected != dtype_)
    throw std::logic_error("tensor of dtype " + std::string{runtime::to_string(dtype_)} +
                           " accessed as " + std::string{runtime::to_string(expected)});
}

void* tensor::mutable_raw_data() {
  if (!storage_)
    throw std::logic_error("access to an undefined tensor");
  detach();
  return static_cast<char*>(storage_->data()) + byte_offset();
}

void tensor::detach() {
  if (in_place_ || storage_.use_count() == 1)
    return;
  // Only this tensor's range: a view of a large shared buffer copies its own
  // elements, not the buffer.
  auto fresh = storage::allocate(nbytes(), storage_->where());
  if (nbytes())
    metered_copy(fresh->data(), raw_data(), nbytes());
  storage_ = std::move(fresh);
  offset_ = 0;
}

tensor tensor::clone() const {
  if (!storage_)
    return {};
  auto r = empty(dtype_, shape_, where());
  if (nbytes())
    metered_copy(r.storage_->data(), raw_data(), nbytes());
  return r;
}

tensor tensor::reshape(shape_t new_shape) const {
  auto n = shape_numel(new_shape);
  if (n != numel_)
    throw std::invalid_argument("reshape " + to_string(shape_) + " -> " + to_string(new_shape) +
                                " changes the element count");
  return tensor{storage_, dtype_, std::move(new_shape), n, offset_};
}

tensor tensor::view(std::int64_t offset, shape_t shape) const {
  if (!storage_)
    throw std::logic_error("view of an undefined tensor");
  auto n = shape_numel(shape);
  if (offset < 0 || offset > numel_ || n > numel_ - offset)
    throw std::out_of_range("tensor::view: elements [" + std::to_string(offset) + ", " +
                            std::to_string(offset) + " + " + std::to_string(n) +
                            ") outside a tensor of " + std::to_string(numel_) + " elements " +
                            to_string(shape_));
  return tensor{storage_, dtype_, std::move(shape), n, offset_ + offset};
}

tensor tensor::in_place_view(std::int64_t offset, shape_t shape) const {
  tensor v = view(offset, std::move(shape));
  v.in_place_ = true;
  return v;
}

bool bitwise_equal(const tensor& a, const tensor& b) {
  if (a.defined() != b.defined())
    return false;
  if (!a.defined())
    return true;
  return a.type() == b.type() && a.shape() == b.shape() &&
         (a.nbytes() == 0 || std::memcmp(a.raw_data(), b.raw_data(), a.nbytes()) == 0);
}

double relative_difference(const tensor& a, const tensor& b) {
  if (a.shape() != b.shape())
    throw std::invalid_argument("relative_difference: shapes " + to_string(a.shape()) + " and " +
                                to_string(b.shape()));
  auto x = a.values<float>();
  auto y = b.values<float>();
  double num = 0, den = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    double d = double(x[i]) - double(y[i]);
    num += d * d;
    den += double(y[i]) * double(y[i]);
  }
  return std::sqrt(num) / std::max(std::sqrt(den), 1e-30);
}

} // namespace troupe::runtime
