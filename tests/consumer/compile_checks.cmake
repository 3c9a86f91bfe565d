# Compile-time checks of the public API, included from tests/CMakeLists.txt: targets
# outside `all`, built by a ctest entry that expects success or failure.
#   state_get_supported_type    State::get<int> compiles, links and runs
#   state_get_unsupported_type  State::get<std::vector<int>> fails to compile, and the
#                               error lists the supported types
add_executable(ckpt_get_supported_type EXCLUDE_FROM_ALL ${CMAKE_CURRENT_LIST_DIR}/state_get_type.cpp)
target_link_libraries(ckpt_get_supported_type PRIVATE ckpt::ckpt)
target_compile_definitions(ckpt_get_supported_type PRIVATE CKPT_GET_TYPE=int)
add_executable(ckpt_get_unsupported_type EXCLUDE_FROM_ALL ${CMAKE_CURRENT_LIST_DIR}/state_get_type.cpp)
target_link_libraries(ckpt_get_unsupported_type PRIVATE ckpt::ckpt)
target_compile_definitions(ckpt_get_unsupported_type PRIVATE "CKPT_GET_TYPE=std::vector<int>")

foreach(check supported unsupported)
  if(check STREQUAL "supported")
    set(expect_success ON)
  else()
    set(expect_success OFF)
  endif()
  add_test(NAME state_get_${check}_type
    COMMAND ${CMAKE_COMMAND}
      -DBUILD_DIR=${PROJECT_BINARY_DIR}
      -DTARGET=ckpt_get_${check}_type
      -DEXPECT_SUCCESS=${expect_success}
      "-DEXPECT_OUTPUT=Supported types: int64_t, double, bool, std::string, at::Tensor (torch::Tensor), ckpt::State, and any other integer type (int, long, int32_t, size_t, uint64_t, ...: range-checked) or floating type (float, long double)"
      -DCONFIG=$<CONFIG>
      -P ${CMAKE_CURRENT_LIST_DIR}/run_compile_check.cmake)
  set_tests_properties(state_get_${check}_type PROPERTIES TIMEOUT 600 RESOURCE_LOCK ckpt_build_tree)
endforeach()
