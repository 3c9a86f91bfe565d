#!/usr/bin/env bash
# The quick start's main job: installs what is missing, builds, and runs the demo
# trainer twice in a fresh directory: the first run is interrupted by a real SIGINT
# during epoch 12 and saves an interrupt checkpoint; the second resumes from it and
# finishes. Then it shows the directory and the history from the index.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh --target demo_trainer

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
echo "== $dir =="
ls -l "$dir"
echo
echo "== history: sqlite3 $dir/index.sqlite (events, last 15) =="
sqlite3 -header -column "$dir/index.sqlite" \
  "SELECT at, event, detail FROM (SELECT * FROM events ORDER BY id DESC LIMIT 15) ORDER BY id"
