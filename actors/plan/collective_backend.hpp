#pragma once

// Which implementation of the collective protocol (collective_group.hpp) a
// group of replicas uses. Both answer the same requests with the same results
// (up to the rounding of the summation order):
//
//   actors: collective_rank actors (collective_group.hpp). Plans of
//           collective_algorithms.hpp executed with CAF messages; deterministic
//           summation order; works for any devices, in and across processes.
//   nccl:   nccl_rank actors (nccl_group.hpp). One NCCL communicator per rank on
//           the rank's GPU; NVLink / PCIe / InfiniBand bandwidth, but NCCL's
//           own summation order (results agree with the actor backend within
//           rounding, not bitwise).
//
// The choice: NCCL exactly when every replica computes on a CUDA device and
// NCCL is usable (compiled in, and this process sees a GPU). NCCL can only
// reduce between GPUs, so one CPU replica puts the whole group on the actor
// backend (a group uses one backend: all its ranks must run the same
// protocol). The decision is a pure function of its inputs, so every process
// that takes it from the same plan takes the same one.

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/device.hpp"

namespace troupe::actors {

enum class collective_backend : std::uint8_t {
  actors, ///< collective_rank actors (CAF messages, CPU reductions)
  nccl,   ///< nccl_rank actors (NCCL on the replicas' GPUs)
};

/// "actors" or "nccl".
std::string to_string(collective_backend b);

/// True when this build contains the NCCL backend (CUDA and NCCL were found
/// at configure time; TROUPE_HAVE_NCCL).
bool nccl_compiled() noexcept;

/// Runtime probe: NCCL is compiled in and this process can use at least one
/// CUDA device. When not, `why_not` (if given) says why ("NCCL backend not
/// compiled in", "no CUDA device: cudaGetDeviceCount: ...").
bool nccl_available(std::string* why_not = nullptr);

/// nccl when `nccl_available` and every replica device is a CUDA device (and
/// there is at least one), actors otherwise. Pass nccl_available() of the
/// process that will host the ranks. At most one rank per GPU may share a
/// process (NCCL refuses duplicates when the communicator is created).
collective_backend choose_collective_backend(const std::vector<runtime::device>& replica_devices,
                                             bool nccl_available);

} // namespace troupe::actors
