#pragma once

#include <string>

// Host-only declarations (no CUDA headers): kernels/gpu.cpp includes this to
// probe devices without compiling against the CUDA toolkit itself.

namespace troupe::kernels::cuda {

/// Number of CUDA devices this process can use (0 when there is no GPU, no
/// driver or the driver is too old). On 0, `reason` says why, e.g.
/// "cudaGetDeviceCount: CUDA driver version is insufficient for CUDA runtime
/// version (error 35)". Never throws; clears CUDA's sticky last error.
int usable_device_count(std::string& reason);

} // namespace troupe::kernels::cuda
