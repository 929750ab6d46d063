// Device probe, error checking and memory helpers (host code, built by g++).

#include <cuda_runtime_api.h>

#include <stdexcept>
#include <string>

#include "kernels/cuda/kernels.hpp"
#include "kernels/cuda/probe.hpp"

namespace troupe::kernels::cuda {

namespace {
std::string describe(cudaError_t err) {
  return std::string(cudaGetErrorString(err)) + " (error " +
         std::to_string(static_cast<int>(err)) + ")";
}
} // namespace

void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) throw std::runtime_error(std::string("cuda: ") + what + ": " + describe(err));
}

int usable_device_count(std::string& reason) {
  // Without a driver cudaGetDeviceCount returns an error (35, insufficient
  // driver) and leaves the count untouched: start from 0, treat any error as
  // "no GPU" and clear the sticky last error so later calls start clean.
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    reason = "cudaGetDeviceCount: " + describe(err);
    (void)cudaGetLastError();
    return 0;
  }
  if (count <= 0) {
    reason = "cudaGetDeviceCount: no CUDA devices";
    return 0;
  }
  reason.clear();
  return count;
}

float* alloc_floats(std::int64_t n) {
  void* p = nullptr;
  check(cudaMalloc(&p, static_cast<std::size_t>(n > 0 ? n : 1) * sizeof(float)), "cudaMalloc");
  return static_cast<float*>(p);
}

void free_device(void* p) noexcept { (void)cudaFree(p); }

void copy_to_device(float* dst, const float* host_src, std::int64_t n) {
  check(cudaMemcpy(dst, host_src, static_cast<std::size_t>(n) * sizeof(float),
                   cudaMemcpyHostToDevice),
        "cudaMemcpy to device");
}

void copy_to_host(float* host_dst, const float* src, std::int64_t n) {
  check(cudaMemcpy(host_dst, src, static_cast<std::size_t>(n) * sizeof(float),
                   cudaMemcpyDeviceToHost),
        "cudaMemcpy to host");
}

void synchronize() { check(cudaDeviceSynchronize(), "cudaDeviceSynchronize"); }

} // namespace troupe::kernels::cuda
