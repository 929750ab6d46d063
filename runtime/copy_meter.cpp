#include "runtime/copy_meter.hpp"

#include <chrono>
#include <cstring>

namespace troupe::runtime {

namespace {

thread_local copy_meter* active_meter = nullptr;

} // namespace

copy_meter_scope::copy_meter_scope(copy_meter* m) noexcept : outer_(active_meter) {
  active_meter = m;
}

copy_meter_scope::~copy_meter_scope() {
  active_meter = outer_;
}

void metered_copy(void* dst, const void* src, std::size_t n) noexcept {
  auto* m = active_meter;
  if (m == nullptr) {
    std::memcpy(dst, src, n);
    return;
  }
  const auto t0 = std::chrono::steady_clock::now();
  std::memcpy(dst, src, n);
  m->ns +=
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  m->bytes += static_cast<std::int64_t>(n);
  ++m->copies;
}

} // namespace troupe::runtime
