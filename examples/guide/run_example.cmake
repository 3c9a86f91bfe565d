# Runs one guide example as a ctest step: in WORKING_DIR (emptied first when FRESH is
# set), with ARGS (a space-separated string), and checks its exit status (EXPECT_EXIT,
# default 0) and that its output (stdout and stderr) matches each regex of EXPECT (a list
# separated by '|||').
foreach(var PROGRAM WORKING_DIR)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "${var} is required")
  endif()
endforeach()
if(NOT DEFINED EXPECT_EXIT)
  set(EXPECT_EXIT 0)
endif()
if(FRESH)
  file(REMOVE_RECURSE "${WORKING_DIR}")
endif()
file(MAKE_DIRECTORY "${WORKING_DIR}")
separate_arguments(args UNIX_COMMAND "${ARGS}")
execute_process(COMMAND "${PROGRAM}" ${args}
  WORKING_DIRECTORY "${WORKING_DIR}"
  RESULT_VARIABLE result
  OUTPUT_VARIABLE out
  ERROR_VARIABLE out)
message("${out}")
if(NOT "${result}" STREQUAL "${EXPECT_EXIT}")
  message(FATAL_ERROR "${PROGRAM} ${ARGS}: exit status ${result}, expected ${EXPECT_EXIT}")
endif()
if(DEFINED EXPECT)
  string(REPLACE "|||" ";" patterns "${EXPECT}")
  foreach(pattern IN LISTS patterns)
    if(NOT out MATCHES "${pattern}")
      message(FATAL_ERROR "${PROGRAM} ${ARGS}: the output does not match '${pattern}'")
    endif()
  endforeach()
endif()
