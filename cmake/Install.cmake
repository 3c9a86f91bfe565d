# Installs the libraries, headers, the `ckpt` tool and a CMake package with two components:
#   find_package(ckpt CONFIG REQUIRED)                   # both: ckpt::ckpt and ckpt::core
#   find_package(ckpt CONFIG REQUIRED COMPONENTS core)   # ckpt::core only: needs no libtorch
#   find_package(ckpt CONFIG REQUIRED COMPONENTS distributed)  # ckpt::distributed (c10d),
#                                                        # where it was built (CKPT_BUILD_DISTRIBUTED)
# Each component is an export set of its own, so a torch-free tool finds the package on
# a machine without libtorch (tests/consumer checks both ways).
include(CMakePackageConfigHelpers)

install(TARGETS ckpt_core
  EXPORT ckptCoreTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS ckpt
  EXPORT ckptTorchTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
if(TARGET ckpt_distributed)
  set_target_properties(ckpt_distributed PROPERTIES EXPORT_NAME distributed)
  install(TARGETS ckpt_distributed
    EXPORT ckptDistributedTargets
    ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
    INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
endif()
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/ckpt DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
  PATTERN "*.in" EXCLUDE)
install(FILES ${CKPT_GENERATED_INCLUDE_DIR}/ckpt/version.hpp
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/ckpt)

set(ckpt_config_dir ${CMAKE_INSTALL_LIBDIR}/cmake/ckpt)
install(EXPORT ckptCoreTargets NAMESPACE ckpt:: DESTINATION ${ckpt_config_dir})
install(EXPORT ckptTorchTargets NAMESPACE ckpt:: DESTINATION ${ckpt_config_dir})
if(TARGET ckpt_distributed)
  install(EXPORT ckptDistributedTargets NAMESPACE ckpt:: DESTINATION ${ckpt_config_dir})
endif()
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/ckptConfig.cmake.in
  ${PROJECT_BINARY_DIR}/ckptConfig.cmake INSTALL_DESTINATION ${ckpt_config_dir})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/ckptConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/ckptConfig.cmake ${PROJECT_BINARY_DIR}/ckptConfigVersion.cmake
  DESTINATION ${ckpt_config_dir})
