#!/usr/bin/env bash
# The quick start's test command (and what CI runs): installs what is missing, builds
# everything, and runs the whole suite through ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
# Two at a time: each entry has its own scratch directories (tests/CMakeLists.txt).
ctest --test-dir build -j2 --output-on-failure
