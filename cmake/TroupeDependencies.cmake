# Third-party dependencies, all from Debian 12 packages (scripts/bootstrap installs them).
find_package(Threads REQUIRED)
find_package(CAF REQUIRED)
find_package(OpenBLASOpenMP REQUIRED)
find_package(OpenMP REQUIRED COMPONENTS CXX)
# oneDNN's matmul is the other GEMM backend (--gemm onednn); cmake/FindDnnl.cmake.
find_package(Dnnl REQUIRED)
find_package(spdlog REQUIRED)
find_package(fmt REQUIRED)
find_package(nlohmann_json 3.10 REQUIRED)
find_package(CLI11 REQUIRED)
find_package(ZLIB REQUIRED)
# libzip reads NumPy .npz archives (runtime/io/npz); cmake/FindLibZip.cmake.
find_package(LibZip REQUIRED)
find_package(OpenSSL REQUIRED)
find_package(Boost 1.74 REQUIRED COMPONENTS system)
if(TROUPE_BUILD_TESTS)
  find_package(Boost 1.74 REQUIRED COMPONENTS unit_test_framework)
endif()

# CUDA is optional: kernels/cuda builds only when nvcc is found.
set(TROUPE_HAVE_CUDA OFF)
if(TROUPE_ENABLE_CUDA)
  if(NOT DEFINED CMAKE_CUDA_COMPILER AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
  endif()
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    # One architecture keeps CI fast; override with -DCMAKE_CUDA_ARCHITECTURES=...
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
      set(CMAKE_CUDA_ARCHITECTURES 80)
    endif()
    enable_language(CUDA)
    find_package(CUDAToolkit REQUIRED)
    set(TROUPE_HAVE_CUDA ON)
  endif()
endif()
message(STATUS "troupe: CUDA kernels ${TROUPE_HAVE_CUDA}")

# NCCL is optional too (some CUDA installs lack it): the NCCL collective backend
# (kernels/cuda/nccl_communicator, actors/nccl_group) builds only with CUDA and
# NCCL >= 2.14 (non-blocking communicators, ncclGetLastError).
set(TROUPE_HAVE_NCCL OFF)
if(TROUPE_HAVE_CUDA AND TROUPE_ENABLE_NCCL)
  find_package(NCCL 2.14)
  if(NCCL_FOUND)
    set(TROUPE_HAVE_NCCL ON)
  endif()
endif()
message(STATUS "troupe: NCCL collective backend ${TROUPE_HAVE_NCCL}")
