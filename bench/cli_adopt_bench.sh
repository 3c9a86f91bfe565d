#!/usr/bin/env bash
# `ckpt import` and `ckpt verify` of a directory the guide's Python loop wrote (4 epoch
# files of 64 float32 tensors of 4 MiB: 1.07 GB), two builds of the tool side by side,
# alternating, warm page cache. Prints one line per round and the medians.
#
#   bash bench/cli_adopt_bench.sh OLD_CKPT NEW_CKPT [ROUNDS]
#
# Each import runs on a fresh copy of the Python directory (no index); verify runs on the
# directory the old tool imported (an index both builds read).
set -euo pipefail
old=$1 new=$2 rounds=${3:-5}
work=$(mktemp -d /tmp/ckpt-adopt-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
/usr/bin/python3 - "$work/src" <<'EOF'
import os, sys, torch
os.makedirs(sys.argv[1])
torch.manual_seed(0)
for e in range(1, 5):
    state = {'epoch': e, 'model': {f'w{i}': torch.randn(1 << 20) for i in range(64)}, 'val_acc': 0.5 + e * 0.1}
    torch.save(state, f'{sys.argv[1]}/checkpoint_epoch_{e}.pth')
EOF
touch -d '-1 min' "$work"/src/*  # not a save in progress
seconds() { /usr/bin/time -f %e "$@" 2>&1 >/dev/null | tail -1; }
declare -a oi ni ov nv
cp -a "$work/src" "$work/verify" && "$old" import "$work/verify" >/dev/null
for round in $(seq "$rounds"); do
  rm -rf "$work/a" "$work/b" && cp -a "$work/src" "$work/a" && cp -a "$work/src" "$work/b"
  oi+=("$(seconds "$old" import "$work/a")") ni+=("$(seconds "$new" import "$work/b")")
  ov+=("$(seconds "$old" verify "$work/verify")") nv+=("$(seconds "$new" verify "$work/verify")")
  echo "round $round: import old ${oi[-1]} s new ${ni[-1]} s; verify old ${ov[-1]} s new ${nv[-1]} s"
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "median: import old $(median "${oi[@]}") s new $(median "${ni[@]}") s; verify old $(median "${ov[@]}") s new $(median "${nv[@]}") s"
