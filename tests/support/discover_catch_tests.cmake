# Writes a ctest file with one entry per Catch2 test case of TEST_EXECUTABLE, labelled with
# its tags (tests/CMakeLists.txt runs it after each link of the binary, as Catch2's
# catch_discover_tests does).
#
# Why not Catch2 v2's own CatchAddTests.cmake: it splits the name list on ';' (a CMake
# list), so "max_to_keep 0 keeps every epoch; a negative value is refused" became two
# entries that each match no case, it does not escape '\' in a name, it has no labels, and
# it accepts a binary that crashed while listing (an ASan abort) as a binary with no cases.
# Here a listing that does not exit with Catch's count of cases fails the build.
#
# Inputs (-D): TEST_EXECUTABLE, CTEST_FILE, WORKING_DIR, EXTRA_ARGS (;-list), LABELS (given to
# every entry, before the tags), TIMEOUT, ENVIRONMENT (;-list of NAME=value).

# Names and tags are kept out of CMake lists: ';' and '[' ']' mean something there.
set(semicolon "<ckpt-semicolon>")
set(open "<ckpt-open>")
set(close "<ckpt-close>")

# Runs the binary with `args`; sets `out_var` to its lines (placeholders for ; [ ]).
# Catch v2 exits with the number of cases listed (at most 255): anything else (a sanitizer report, a
# crash before main) fails here rather than leaving ctest with fewer entries.
function(list_cases out_var)
  execute_process(
    COMMAND "${TEST_EXECUTABLE}" ${ARGN} --list-test-names-only
    OUTPUT_VARIABLE output
    ERROR_VARIABLE errors
    RESULT_VARIABLE result
    WORKING_DIRECTORY "${WORKING_DIR}")
  string(REPLACE ";" "${semicolon}" output "${output}")
  string(REPLACE "[" "${open}" output "${output}")
  string(REPLACE "]" "${close}" output "${output}")
  string(REGEX REPLACE "\n$" "" output "${output}")
  if(output STREQUAL "")
    set(lines "")
    set(count 0)
  else()
    string(REPLACE "\n" ";" lines "${output}")
    list(LENGTH lines count)
  endif()
  # Catch clamps the count to 255 (its MaxExitCode): 255 and more cases all exit 255.
  if(count LESS 255)
    set(expected "${count}")
  else()
    set(expected 255)
  endif()
  if(NOT result STREQUAL "${expected}")
    message(FATAL_ERROR "listing the cases of ${TEST_EXECUTABLE} ${ARGN} exited with '${result}' "
                        "after ${count} names:\n${errors}")
  endif()
  set(${out_var} "${lines}" PARENT_SCOPE)
endfunction()

function(restore out_var text)
  string(REPLACE "${semicolon}" ";" text "${text}")
  string(REPLACE "${open}" "[" text "${text}")
  string(REPLACE "${close}" "]" text "${text}")
  set(${out_var} "${text}" PARENT_SCOPE)
endfunction()

# A bracket argument holds any text but its own closing bracket.
function(bracket out_var text)
  if(text MATCHES "]==]")
    message(FATAL_ERROR "a test name or value contains ']==]': ${text}")
  endif()
  set(${out_var} "[==[${text}]==]" PARENT_SCOPE)
endfunction()

list_cases(cases)
if(cases STREQUAL "")
  message(FATAL_ERROR "${TEST_EXECUTABLE} lists no test cases")
endif()

# Tags: `--list-tags` prints "  <count>  [tag]" lines; then the cases of each tag.
execute_process(
  COMMAND "${TEST_EXECUTABLE}" --list-tags
  OUTPUT_VARIABLE tag_output
  RESULT_VARIABLE tag_result
  WORKING_DIRECTORY "${WORKING_DIR}")
string(REGEX MATCHALL "\\[[^]\n]+\\]" tags "${tag_output}")
foreach(tag IN LISTS tags)
  string(REGEX REPLACE "^\\[(.*)\\]$" "\\1" label "${tag}")
  if(NOT label MATCHES "^[a-z0-9-]+$")
    message(FATAL_ERROR "tag ${tag}: a tag is a ctest label, so lower case, digits and '-' only")
  endif()
  list_cases(tagged "${tag}")
  foreach(case IN LISTS tagged)
    string(MD5 key "${case}")
    list(APPEND labels_${key} ${label})
  endforeach()
endforeach()

set(script "")
set(properties "")
if(TIMEOUT)
  string(APPEND properties " TIMEOUT ${TIMEOUT}")
endif()
if(ENVIRONMENT)
  bracket(environment "${ENVIRONMENT}")
  string(APPEND properties " ENVIRONMENT ${environment}")
endif()
bracket(working_dir "${WORKING_DIR}")
bracket(executable "${TEST_EXECUTABLE}")
set(extra "")
foreach(arg IN LISTS EXTRA_ARGS)
  bracket(quoted "${arg}")
  string(APPEND extra " ${quoted}")
endforeach()
foreach(case IN LISTS cases)
  string(MD5 key "${case}")
  restore(name "${case}")
  # Catch's test spec: '\' escapes the next character; ',' '[' ']' are syntax.
  set(spec "${name}")
  foreach(char \\ , [ ])
    string(REPLACE "${char}" "\\${char}" spec "${spec}")
  endforeach()
  bracket(quoted_name "${name}")
  bracket(quoted_spec "${spec}")
  set(labels ${LABELS} ${labels_${key}})
  list(REMOVE_DUPLICATES labels)
  bracket(quoted_labels "${labels}")
  string(APPEND script
    "add_test(${quoted_name} ${executable} ${quoted_spec}${extra})\n"
    "set_tests_properties(${quoted_name} PROPERTIES WORKING_DIRECTORY ${working_dir} LABELS ${quoted_labels}${properties})\n")
endforeach()
file(WRITE "${CTEST_FILE}" "${script}")
