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
/// reference-counted storage, of which it covers the elements
/// [storage_offset(), storage_offset() + numel()).
///
/// Copying a tensor (or sending it to an actor in the same process) shares the
/// storage. Writers go through `mutable_data()`, which copies the tensor's
/// range first when anyone else still holds the storage (copy on write), so a
/// tensor that has been sent is never mutated under its reader: an optimizer
/// updating a parameter that a checkpoint writer or a parameter server still
/// reads gets a fresh version instead.
///
/// A view (view(), slice()) is a tensor over part of another's storage: O(1),
/// no bytes copied, so a collective can send a block of its buffer in place
/// and write received blocks into the range of one result. Everything that
/// reads bytes (data(), raw_data(), nbytes(), serialisation, the data plane)
/// sees the view's range only; a view travels as a compact tensor.
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
  /// Element offset of element 0 in the storage (0 unless a view).
  std::int64_t storage_offset() const noexcept { return offset_; }
  /// Bytes of the whole storage (more than nbytes() for a view): what the
  /// tensor keeps alive.
  std::size_t storage_nbytes() const noexcept { return storage_ ? storage_->size_bytes() : 0; }
  device where() const noexcept { return storage_ ? storage_->where() : device::cpu(); }

  /// Read access; throws std::logic_error when T does not match the dtype.
  template <class T>
  const T* data() const {
    check_access(dtype_v<T>);
    return static_cast<const T*>(storage_->data()) + offset_;
  }
  template <class T>
  std::span<const T> values() const {
    return {data<T>(), static_cast<std::size_t>(numel_)};
  }
  const void* raw_data() const noexcept {
    return storage_ ? static_cast<const char*>(storage_->data()) + byte_offset() : nullptr;
  }

  /// Write access: if the storage is shared, first copies this tensor's range
  /// (not the whole storage) into a storage of its own (copy on write).
  template <class T>
  T* mutable_data() {
    check_access(dtype_v<T>);
    detach();
    return static_cast<T*>(storage_->data()) + offset_;
  }
  void* mutable_raw_data();

  /// True when no other tensor shares this storage (a write will not copy).
  /// Two views of disjoint ranges of one storage share it: neither is unique.
  bool is_unique() const noexcept { return storage_ && storage_.use_count() == 1; }
  bool shares_storage_with(const tensor& other) const noexcept {
    return storage_ && storage_ == other.storage_;
  }

  /// A deep copy with its own storage.
  tensor clone() const;
  /// Same bytes, new shape (same numel); shares the storage.
  tensor reshape(shape_t new_shape) const;
  /// The elements [offset, offset + numel(shape)) of this tensor, in flat
  /// (row-major) order, as a tensor of `shape` sharing the storage: O(1).
  /// Throws std::out_of_range when the range does not fit in this tensor.
  /// Works on any device: it only moves the offset (copy on write of a
  /// non-CPU storage is refused by storage::allocate, as for whole tensors).
  tensor view(std::int64_t offset, shape_t shape) const;
  /// view(offset, {count}): a 1-D range of the flat elements.
  tensor slice(std::int64_t offset, std::int64_t count) const { return view(offset, {count}); }
  /// view(), except that writes through it go to the shared storage, with no
  /// copy on write: for a buffer its owner fills before anyone reads it and
  /// never writes again once it is handed out (a data-parallel gradient
  /// bucket: the backward writes each gradient into its range, then the
  /// whole bucket goes to the all-reduce). Copies of the view keep the mark;
  /// views, reshapes and clones of it do not.
  tensor in_place_view(std::int64_t offset, shape_t shape) const;
  bool writes_in_place() const noexcept { return in_place_; }

  /// Wraps an existing storage (used by deserialisation and the data plane).
  static tensor wrap(std::shared_ptr<storage> s, dtype t, shape_t shape);

private:
  tensor(std::shared_ptr<storage> s, dtype t, shape_t shape, std::int64_t n,
         std::int64_t offset = 0)
      : storage_(std::move(s)), dtype_(t), shape_(std::move(shape)), numel_(n), offset_(offset) {}
  std::size_t byte_offset() const noexcept {
    return static_cast<std::size_t>(offset_) * element_size(dtype_);
  }
  void check_access(dtype expected) const;
  void detach();

  std::shared_ptr<storage> storage_;
  dtype dtype_ = dtype::f32;
  shape_t shape_;
  std::int64_t numel_ = 0;
  std::int64_t offset_ = 0; ///< in elements of dtype_
  bool in_place_ = false;   ///< in_place_view(): writes skip copy on write
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
