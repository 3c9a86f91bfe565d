# Runs one logging probe in a child process and checks what it printed.
#   -DPROGRAM=<probe> [-DARGS=<a;b>] [-DSPDLOG_LEVEL_VALUE=<value>]
#   [-DSTDOUT_HAS=<regexes>] [-DSTDERR_HAS=<regexes>] [-DSTDERR_LACKS=<regexes>]
# SPDLOG_LEVEL is unset for the child unless SPDLOG_LEVEL_VALUE is given, so the
# developer's own environment cannot change the outcome.
set(env_args --unset=SPDLOG_LEVEL)
if(DEFINED SPDLOG_LEVEL_VALUE)
  list(APPEND env_args "SPDLOG_LEVEL=${SPDLOG_LEVEL_VALUE}")
endif()
execute_process(
  COMMAND ${CMAKE_COMMAND} -E env ${env_args} ${PROGRAM} ${ARGS}
  OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)

set(problems "")
if(NOT rc STREQUAL "0")
  string(APPEND problems "  exit status ${rc}, expected 0\n")
endif()
if(NOT out MATCHES "scenario done")
  string(APPEND problems "  stdout lacks 'scenario done' (the probe did not finish)\n")
endif()
foreach(regex IN LISTS STDOUT_HAS)
  if(NOT out MATCHES "${regex}")
    string(APPEND problems "  stdout lacks /${regex}/\n")
  endif()
endforeach()
foreach(regex IN LISTS STDERR_HAS)
  if(NOT err MATCHES "${regex}")
    string(APPEND problems "  stderr lacks /${regex}/\n")
  endif()
endforeach()
foreach(regex IN LISTS STDERR_LACKS)
  if(err MATCHES "${regex}")
    string(APPEND problems "  stderr has /${regex}/\n")
  endif()
endforeach()
if(problems)
  message(FATAL_ERROR "${PROGRAM} ${ARGS} (SPDLOG_LEVEL=${SPDLOG_LEVEL_VALUE}):\n${problems}"
                      "--- stdout:\n${out}--- stderr:\n${err}")
endif()
message(STATUS "ok: ${PROGRAM} ${ARGS} (SPDLOG_LEVEL=${SPDLOG_LEVEL_VALUE})")
