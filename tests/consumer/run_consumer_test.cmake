# Installs the build tree into a scratch prefix, builds tests/consumer against it with
# find_package, and runs both programs. Invoked by ctest (see tests/CMakeLists.txt).
foreach(var SOURCE_DIR BUILD_DIR WORK_DIR)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "${var} is required")
  endif()
endforeach()

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE result)
  if(NOT result EQUAL 0)
    message(FATAL_ERROR "failed (${result}): ${ARGN}")
  endif()
endfunction()

file(REMOVE_RECURSE "${WORK_DIR}")
set(prefix "${WORK_DIR}/prefix")
run(${CMAKE_COMMAND} --install "${BUILD_DIR}" --prefix "${prefix}")
run(${CMAKE_COMMAND} -S "${SOURCE_DIR}/tests/consumer" -B "${WORK_DIR}/build"
    -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
run(${CMAKE_COMMAND} --build "${WORK_DIR}/build" -j2)
run("${WORK_DIR}/build/consumer_trainer" "${WORK_DIR}/checkpoints")
run("${WORK_DIR}/build/consumer_core" "${WORK_DIR}/checkpoints")
# The command-line tool is installed with the library and works on what the trainer wrote.
run("${prefix}/bin/ckpt" ls "${WORK_DIR}/checkpoints")
message(STATUS "consumer project built against ${prefix} and ran")
