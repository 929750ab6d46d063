#pragma once

#include <string>

namespace troupe::kernels {

/// What the GPU probe found: how many CUDA devices this process can use and,
/// when none, why ("built without CUDA", "cudaGetDeviceCount: CUDA driver
/// version is insufficient for CUDA runtime version (error 35)", ...).
struct gpu_probe {
  int usable_devices = 0;
  std::string reason;
};

/// Probes for usable GPUs. Never throws; safe on machines without a driver.
gpu_probe probe_gpus();

/// True when this build contains the CUDA kernels (kernels/cuda).
bool built_with_cuda() noexcept;

} // namespace troupe::kernels
