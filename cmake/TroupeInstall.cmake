# Installs the CMake package: `find_package(troupe)` then
# `target_link_libraries(app PRIVATE troupe::troupe)`.
# Layer targets and headers are installed by each layer's CMakeLists; this file
# exports them (troupe::troupe, troupe::troupe_runtime, ...) with a config that
# finds their dependencies, a version file and the Find modules the config uses.
include(CMakePackageConfigHelpers)

set(TROUPE_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/troupe)

install(EXPORT troupeTargets
  NAMESPACE troupe::
  FILE troupeTargets.cmake
  DESTINATION ${TROUPE_INSTALL_CMAKEDIR})

# Where the CUDA toolkit was when troupe was built (a hint for consumers).
set(TROUPE_CUDA_TOOLKIT_ROOT "")
if(TROUPE_HAVE_CUDA AND CUDAToolkit_BIN_DIR)
  get_filename_component(TROUPE_CUDA_TOOLKIT_ROOT "${CUDAToolkit_BIN_DIR}" DIRECTORY)
endif()

configure_package_config_file(
  ${PROJECT_SOURCE_DIR}/cmake/troupeConfig.cmake.in
  ${PROJECT_BINARY_DIR}/troupeConfig.cmake
  INSTALL_DESTINATION ${TROUPE_INSTALL_CMAKEDIR})
write_basic_package_version_file(
  ${PROJECT_BINARY_DIR}/troupeConfigVersion.cmake
  VERSION ${PROJECT_VERSION}
  COMPATIBILITY SameMinorVersion)

install(FILES
  ${PROJECT_BINARY_DIR}/troupeConfig.cmake
  ${PROJECT_BINARY_DIR}/troupeConfigVersion.cmake
  ${PROJECT_SOURCE_DIR}/cmake/FindCAF.cmake
  ${PROJECT_SOURCE_DIR}/cmake/FindOpenBLASOpenMP.cmake
  ${PROJECT_SOURCE_DIR}/cmake/FindLibZip.cmake
  ${PROJECT_SOURCE_DIR}/cmake/FindDnnl.cmake
  ${PROJECT_SOURCE_DIR}/cmake/FindNCCL.cmake
  DESTINATION ${TROUPE_INSTALL_CMAKEDIR})
