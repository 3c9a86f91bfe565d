// What every logging probe does after its first statement: library calls that log, at
// info (opening a directory with a leftover temp file: recovery removes it) and at debug
// (a save), then "scenario done" on stdout.
#pragma once

namespace ckpt::test {

void run_logging_scenario();

}  // namespace ckpt::test
