# Locates oneDNN (Debian: libdnnl-dev) and creates Dnnl::dnnl. Not oneDNN's own
# CMake config: Debian's calls find_package(OpenCL) and fails the configure
# where the OpenCL headers are missing; its C++ headers do not need OpenCL.
include(FindPackageHandleStandardArgs)
find_path(DNNL_INCLUDE_DIR oneapi/dnnl/dnnl.hpp)
find_library(DNNL_LIBRARY NAMES dnnl)
find_package_handle_standard_args(Dnnl REQUIRED_VARS DNNL_LIBRARY DNNL_INCLUDE_DIR)
if(Dnnl_FOUND AND NOT TARGET Dnnl::dnnl)
  add_library(Dnnl::dnnl UNKNOWN IMPORTED)
  set_target_properties(Dnnl::dnnl PROPERTIES
    IMPORTED_LOCATION "${DNNL_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${DNNL_INCLUDE_DIR}")
endif()
