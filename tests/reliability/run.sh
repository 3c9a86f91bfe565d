#!/usr/bin/env bash
# Runs the reliability suites and prints the counts docs/reliability.md quotes.
#
#   bash tests/reliability/run.sh           # the short versions the normal suite runs
#   bash tests/reliability/run.sh --long    # 10,000 kills and a 60 s concurrency run
#
# Needs a built tree (scripts/build.sh). The fuzzing run is separate: tests/fuzz/README.md.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
tests=$root/build/tests/ckpt_core_tests
[[ -x $tests ]] || { echo "build first: bash scripts/build.sh" >&2; exit 1; }
if [[ ${1:-} == --long ]]; then
  export CKPT_KILL_ROUNDS=10000 CKPT_CONCURRENCY_SECONDS=60
fi
export CKPT_REPORT=1 CKPT_TEST_TMP=${CKPT_TEST_TMP:-$root/build/tests/tmp}
"$tests" "[crash],[power-loss],[fault],[corruption],[concurrency],[lock]" | grep -vE '^$|^=+$'
