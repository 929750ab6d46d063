#include "kernels/gpu.hpp"

// kernels/CMakeLists.txt defines TROUPE_HAVE_CUDA to 1 when kernels/cuda is built.
#ifndef TROUPE_HAVE_CUDA
#define TROUPE_HAVE_CUDA 0
#endif

#if TROUPE_HAVE_CUDA
#include "kernels/cuda/probe.hpp"
#endif

namespace troupe::kernels {

gpu_probe probe_gpus() {
  gpu_probe p;
#if TROUPE_HAVE_CUDA
  p.usable_devices = cuda::usable_device_count(p.reason);
#else
  p.reason = "built without CUDA";
#endif
  return p;
}

bool built_with_cuda() noexcept { return TROUPE_HAVE_CUDA != 0; }

} // namespace troupe::kernels
