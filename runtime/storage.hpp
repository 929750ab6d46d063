#pragma once

#include <cstddef>
#include <memory>

#include "runtime/device.hpp"

namespace troupe::runtime {

/// A block of 64-byte aligned memory owned through std::shared_ptr. Tensors
/// share storages; copying a tensor never copies its bytes.
class storage {
public:
  static constexpr std::size_t alignment = 64;

  /// Allocates `bytes` bytes (uninitialised) on `dev`. Only CPU memory is
  /// allocated here; CUDA memory belongs to kernels/cuda.
  static std::shared_ptr<storage> allocate(std::size_t bytes, device dev = device::cpu());

  ~storage();
  storage(const storage&) = delete;
  storage& operator=(const storage&) = delete;

  void* data() noexcept { return data_; }
  const void* data() const noexcept { return data_; }
  std::size_t size_bytes() const noexcept { return size_; }
  device where() const noexcept { return device_; }

private:
  storage(void* data, std::size_t size, device dev) noexcept
    : data_(data), size_(size), device_(dev) {}
  void* data_;
  std::size_t size_;
  device device_;
};

} // namespace troupe::runtime
