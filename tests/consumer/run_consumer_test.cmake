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
set(common -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)

# 1. The whole package, as a trainer finds it.
run(${CMAKE_COMMAND} -S "${SOURCE_DIR}/tests/consumer" -B "${WORK_DIR}/build" ${common})
run(${CMAKE_COMMAND} --build "${WORK_DIR}/build" -j2)
run("${WORK_DIR}/build/consumer_trainer" "${WORK_DIR}/checkpoints")
run("${WORK_DIR}/build/consumer_core" "${WORK_DIR}/checkpoints")
# The command-line tool is installed with the library and works on what the trainer wrote.
run("${prefix}/bin/ckpt" ls "${WORK_DIR}/checkpoints")

# 2. COMPONENTS core with libtorch made unfindable: a torch-free tool needs no libtorch.
run(${CMAKE_COMMAND} -S "${SOURCE_DIR}/tests/consumer" -B "${WORK_DIR}/build-core" ${common}
    -DCKPT_CONSUMER_COMPONENTS=core -DCMAKE_DISABLE_FIND_PACKAGE_Torch=ON)
run(${CMAKE_COMMAND} --build "${WORK_DIR}/build-core" -j2)
if(EXISTS "${WORK_DIR}/build-core/consumer_trainer")
  message(FATAL_ERROR "COMPONENTS core defined ckpt::ckpt")
endif()
run("${WORK_DIR}/build-core/consumer_core" "${WORK_DIR}/checkpoints")

# 3. An unknown component is refused, naming it and the components there are.
execute_process(COMMAND ${CMAKE_COMMAND} -S "${SOURCE_DIR}/tests/consumer" -B "${WORK_DIR}/build-bogus"
    ${common} -DCKPT_CONSUMER_COMPONENTS=bogus
  RESULT_VARIABLE result OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(result EQUAL 0 OR NOT "${out}${err}" MATCHES "no component 'bogus' \\(it has: core, torch, distributed\\)")
  message(FATAL_ERROR "COMPONENTS bogus: expected a refusal naming it, got (${result}):\n${out}${err}")
endif()
message(STATUS "consumer project built against ${prefix} three ways and ran")
