#pragma once

// Where tensor bytes are copied (copy on write, clone, the collectives'
// slices and concatenations), timed for the trace: `troupe bench train` and
// `bench pipeline` report copies as their own part of a step. A traced
// thread installs a meter for the duration of one piece of work; without one
// a copy costs one thread-local load and branch more than its memcpy.

#include <cstddef>
#include <cstdint>

namespace troupe::runtime {

/// What the copies on one thread cost while the meter was installed.
struct copy_meter {
  std::int64_t ns = 0;
  std::int64_t bytes = 0;
  std::int64_t copies = 0;
};

/// Installs `m` as the calling thread's meter for the scope's lifetime (the
/// one it replaces comes back at the end). The meter is thread-local context,
/// not shared state: only the thread that installed it writes to it.
class copy_meter_scope {
public:
  explicit copy_meter_scope(copy_meter* m) noexcept;
  ~copy_meter_scope();
  copy_meter_scope(const copy_meter_scope&) = delete;
  copy_meter_scope& operator=(const copy_meter_scope&) = delete;

private:
  copy_meter* outer_;
};

/// std::memcpy(dst, src, n), timed into the calling thread's meter if it has one.
void metered_copy(void* dst, const void* src, std::size_t n) noexcept;

} // namespace troupe::runtime
