#!/usr/bin/env bash
# The quick start's main job: installs what is missing, builds, and runs the demo
# trainer twice in a fresh directory: the first run is interrupted by a real SIGINT
# during epoch 12 and saves an interrupt checkpoint; the second resumes from it and
# finishes. Then it shows the directory and the history from the index.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh --target demo_trainer --target ckpt_cli

dir=demo_checkpoints
rm -rf "$dir"
echo
echo "== run 1: train, interrupted (SIGINT) during epoch 12 =="
status=0
./build/examples/demo_trainer --dir "$dir" --epochs 25 --interrupt-at-epoch 12 || status=$?
[ "$status" -eq 130 ] || { echo "demo: run 1 should stop on SIGINT (exit 130), got $status" >&2; exit 1; }
echo
echo "== run 2: resume from the interrupt checkpoint and finish =="
./build/examples/demo_trainer --dir "$dir" --epochs 25
echo
echo "== ckpt ls $dir =="
./build/tools/ckpt ls "$dir"
echo
echo "== the run's story: sqlite3 $dir/index.sqlite =="
sqlite3 -header -column "$dir/index.sqlite" \
  "SELECT at, event, detail FROM events
   WHERE event IN ('new_best', 'interrupted', 'resumed_from', 'consumed_obsolete', 'recovered') ORDER BY id"
echo
echo "more: ./build/tools/ckpt history $dir --plot history.svg; docs/cli.md; docs/schema.md"
