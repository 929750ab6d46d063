#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "runtime/device.hpp"
#include "runtime/dtype.hpp"
#include "runtime/storage.hpp"

namespace troupe::runtime {

using shape_t = std::vector<std::int64_t>;

/// Number of elements of a shape; throws std::invalid_argument on a negative
/// extent or an overflow of int64.
std::int64_t shape_numel(const shape_t& s);
std::string to_string(const shape_t& s);

/// A dense, contiguous, row-major tensor: dtype, shape, device and a
/// reference-counted storage.
///
/// Copying a tensor (or sending it to an actor in the same process) shares the
/// storage. Writers go through `mutable_data()`, which copies the storage first
/// when anyone else still holds it (copy on write), so a tensor that has been
/// sent is never mutated under its reader: an optimizer updating a parameter
/// that a checkpoint writer or a parameter server still reads gets a fresh
/// version instead.
class tensor {
public:
  /// An undefined tensor (no storage). Most operations reject it.
  tensor() = default;

  static tensor empty(dtype t, shape_t shape, device dev = device::cpu());
  static tensor zeros(dtype t, shape_t shape, device dev = device::cpu());
  template <class T>
  static tensor from_vector(shape_t shape, const std::vector<T>& values);

  bool defined() const noexcept { return storage_ != nullptr; }
  dtype type() const noexcept { return dtype_; }
  const shape_t& shape() const noexcept { return shape_; }
  std::int64_t dim(std::size_t i) const { return shape_.at(i); }
  std::size_t rank() const noexcept { return shape_.size(); }
  std::int64_t numel() const noexcept { return numel_; }
  std::size_t nbytes() const noexcept {
    return static_cast<std::size_t>(numel_) * element_size(dtype_);
  }
  device where() const noexcept { return storage_ ? storage_->where() : device::cpu(); }

  /// Read access; throws std::logic_error when T does not match the dtype.
  template <class T>
  const T* data() const {
    check_access(dtype_v<T>);
    return static_cast<const T*>(storage_->data());
  }
  template <class T>
  std::span<const T> values() const {
    return {data<T>(), static_cast<std::size_t>(numel_)};
  }
  const void* raw_data() const noexcept { return storage_ ? storage_->data() : nullptr; }

  /// Write access: copies the storage first if it is shared (copy on write).
  template <class T>
  T* mutable_data() {
    check_access(dtype_v<T>);
    detach();
    return static_cast<T*>(storage_->data());
  }
  void* mutable_raw_data();

  /// True when no other tensor shares this storage (a write will not copy).
  bool is_unique() const noexcept { return storage_ && storage_.use_count() == 1; }
  bool shares_storage_with(const tensor& other) const noexcept {
    return storage_ && storage_ == other.storage_;
  }

  /// A deep copy with its own storage.
  tensor clone() const;
  /// Same bytes, new shape (same numel); shares the storage.
  tensor reshape(shape_t new_shape) const;

  /// Wraps an existing storage (used by deserialisation and the data plane).
  static tensor wrap(std::shared_ptr<storage> s, dtype t, shape_t shape);

private:
  tensor(std::shared_ptr<storage> s, dtype t, shape_t shape, std::int64_t n)
    : storage_(std::move(s)), dtype_(t), shape_(std::move(shape)), numel_(n) {}
  void check_access(dtype expected) const;
  void detach();

  std::shared_ptr<storage> storage_;
  dtype dtype_ = dtype::f32;
  shape_t shape_;
  std::int64_t numel_ = 0;
};

template <class T>
tensor tensor::from_vector(shape_t shape, const std::vector<T>& values) {
  tensor t = empty(dtype_v<T>, std::move(shape));
  if (static_cast<std::size_t>(t.numel()) != values.size())
    throw std::invalid_argument("tensor::from_vector: " + std::to_string(values.size()) +
                                " values for shape " + to_string(t.shape()));
  std::copy(values.begin(), values.end(), t.mutable_data<T>());
  return t;
}

/// Elementwise equality of dtype, shape and bytes.
bool bitwise_equal(const tensor& a, const tensor& b);

/// ||a - b|| / max(||b||, tiny), both f32 of the same shape: the norm-relative
/// difference used by every equivalence test.
double relative_difference(const tensor& a, const tensor& b);

} // namespace troupe::runtime
