# Installs the libraries, headers and a CMake package, so that another project can
#   find_package(ckpt CONFIG REQUIRED)
#   target_link_libraries(app PRIVATE ckpt::ckpt)   # or ckpt::core, without torch
include(CMakePackageConfigHelpers)

install(TARGETS ckpt_core ckpt
  EXPORT ckptTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/ckpt DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})

set(ckpt_config_dir ${CMAKE_INSTALL_LIBDIR}/cmake/ckpt)
install(EXPORT ckptTargets NAMESPACE ckpt:: DESTINATION ${ckpt_config_dir})
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/ckptConfig.cmake.in
  ${PROJECT_BINARY_DIR}/ckptConfig.cmake INSTALL_DESTINATION ${ckpt_config_dir})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/ckptConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/ckptConfig.cmake ${PROJECT_BINARY_DIR}/ckptConfigVersion.cmake
  DESTINATION ${ckpt_config_dir})
