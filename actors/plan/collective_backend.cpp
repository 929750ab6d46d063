#include "actors/plan/collective_backend.hpp"

#include <algorithm>

#include "kernels/gpu.hpp"

// kernels/CMakeLists.txt defines TROUPE_HAVE_NCCL to 1 when the NCCL backend is built.
#ifndef TROUPE_HAVE_NCCL
#define TROUPE_HAVE_NCCL 0
#endif

namespace troupe::actors {

std::string to_string(collective_backend b) {
  return b == collective_backend::nccl ? "nccl" : "actors";
}

bool nccl_compiled() noexcept {
  return TROUPE_HAVE_NCCL != 0;
}

bool nccl_available(std::string* why_not) {
  if (!nccl_compiled()) {
    if (why_not)
      *why_not = "NCCL backend not compiled in";
    return false;
  }
  auto probe = kernels::probe_gpus();
  if (probe.usable_devices < 1) {
    if (why_not)
      *why_not = "no CUDA device: " + probe.reason;
    return false;
  }
  if (why_not)
    why_not->clear();
  return true;
}

collective_backend choose_collective_backend(const std::vector<runtime::device>& replica_devices,
                                             bool nccl_available) {
  bool all_cuda =
      !replica_devices.empty() && std::all_of(replica_devices.begin(), replica_devices.end(),
                                              [](const runtime::device& d) { return d.is_cuda(); });
  return nccl_available && all_cuda ? collective_backend::nccl : collective_backend::actors;
}

} // namespace troupe::actors
