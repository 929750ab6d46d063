# Locate the OpenMP build of OpenBLAS explicitly (Debian: libopenblas0-openmp), so
# troupe never silently links the reference BLAS or the pthread build (whose thread
# count cannot be set per calling thread). Creates OpenBLAS::openblas.
include(FindPackageHandleStandardArgs)
find_path(OPENBLAS_INCLUDE_DIR cblas.h PATH_SUFFIXES openblas-openmp openblas-pthread openblas)
find_library(OPENBLAS_OPENMP_LIBRARY NAMES openblas libopenblas.so.0
  PATHS /usr/lib/x86_64-linux-gnu/openblas-openmp /usr/lib/aarch64-linux-gnu/openblas-openmp
  NO_DEFAULT_PATH)
find_package_handle_standard_args(OpenBLASOpenMP REQUIRED_VARS OPENBLAS_OPENMP_LIBRARY OPENBLAS_INCLUDE_DIR)
if(OpenBLASOpenMP_FOUND AND NOT TARGET OpenBLAS::openblas)
  find_package(OpenMP REQUIRED COMPONENTS CXX)
  add_library(OpenBLAS::openblas UNKNOWN IMPORTED)
  set_target_properties(OpenBLAS::openblas PROPERTIES
    IMPORTED_LOCATION "${OPENBLAS_OPENMP_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${OPENBLAS_INCLUDE_DIR}"
    INTERFACE_LINK_LIBRARIES OpenMP::OpenMP_CXX)
endif()
