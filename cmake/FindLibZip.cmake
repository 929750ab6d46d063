# Locates libzip (Debian: libzip-dev), for reading NumPy .npz archives, and creates
# LibZip::LibZip. Not libzip's own CMake config: Debian's references the zipcmp,
# zipmerge and ziptool programs, which libzip-dev does not install, and fails.
include(FindPackageHandleStandardArgs)
find_path(LIBZIP_INCLUDE_DIR zip.h)
find_library(LIBZIP_LIBRARY NAMES zip)
find_package_handle_standard_args(LibZip REQUIRED_VARS LIBZIP_LIBRARY LIBZIP_INCLUDE_DIR)
if(LibZip_FOUND AND NOT TARGET LibZip::LibZip)
  add_library(LibZip::LibZip UNKNOWN IMPORTED)
  set_target_properties(LibZip::LibZip PROPERTIES
    IMPORTED_LOCATION "${LIBZIP_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${LIBZIP_INCLUDE_DIR}")
endif()
