#!/usr/bin/env bash
# Issue 16's benchmark: a sharded save and a resharded load of TOTAL_MIB (default 1024)
# over 1, 2 and 4 ranks on loopback (one machine, one disk), against the single-process
# save and load of the same bytes, ROUNDS (default 3) rounds, sides interleaved within
# each round. The load side loads a checkpoint saved by 4 ranks (resharded at 1 and 2).
# The asynchronous side times the call (the snapshot) and the commit (wait()).
# Loads read from the page cache (files just written; this machine has the RAM).
#
#   bash bench/run_distributed_benchmark.sh        # prints a markdown table
# Uses the build in BUILD (default ./build) configured with -DCKPT_BUILD_BENCH=ON.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-$root/build}
total=${TOTAL_MIB:-1024}
rounds=${ROUNDS:-3}
cmake --build "$build" --target dist_bench -j2 >/dev/null
bench=$build/bench/dist_bench
work=$(mktemp -d /tmp/ckpt-dist-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT

job() {  # world dir action -> rank 0's seconds
  local world=$1 dir=$2 action=$3 port=$((20000 + RANDOM % 30000)) r
  for r in $(seq 1 $((world - 1))); do "$bench" "$r" "$world" "$port" "$dir" "$action" "$total" >/dev/null & done
  "$bench" 0 "$world" "$port" "$dir" "$action" "$total"
  wait
}

declare -A times
for round in $(seq 1 "$rounds"); do
  rm -rf "$work"/*
  times[single-save]+=" $("$bench" 0 1 0 "$work/single" single-save "$total")"
  times[single-load]+=" $("$bench" 0 1 0 "$work/single" single-load "$total")"
  for world in 1 2 4; do
    times[save-$world]+=" $(job "$world" "$work/w$world" save)"
    read -r call commit <<<"$(job "$world" "$work/a$world" async-save)"
    times[async-call-$world]+=" $call"
    times[async-$world]+=" $commit"
  done
  for world in 1 2 4; do
    times[load-$world]+=" $(job "$world" "$work/w4" load)"
  done
  rm -rf "$work"/*
done

median() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
single_save=$(median "${times[single-save]}")
single_load=$(median "${times[single-load]}")
echo "| ${total} MiB | ranks | median s | MiB/s | single process / this |"
echo "|---|---:|---:|---:|---:|"
echo "| single-process save | 1 | $single_save | $(awk -v t="$total" -v s="$single_save" 'BEGIN{printf "%.0f", t/s}') | 1.00x |"
for world in 1 2 4; do
  m=$(median "${times[save-$world]}")
  echo "| sharded save | $world | $m | $(awk -v t="$total" -v s="$m" 'BEGIN{printf "%.0f", t/s}') | $(awk -v a="$single_save" -v b="$m" 'BEGIN{printf "%.2fx", a/b}') |"
done
echo "| single-process load | 1 | $single_load | $(awk -v t="$total" -v s="$single_load" 'BEGIN{printf "%.0f", t/s}') | 1.00x |"
for world in 1 2 4; do
  m=$(median "${times[load-$world]}")
  echo "| load of 4 shards | $world | $m | $(awk -v t="$total" -v s="$m" 'BEGIN{printf "%.0f", t/s}') | $(awk -v a="$single_load" -v b="$m" 'BEGIN{printf "%.2fx", a/b}') |"
done
echo
echo "| asynchronous sharded save | ranks | call returns, median s | committed, median s | synchronous save / call |"
echo "|---|---:|---:|---:|---:|"
for world in 1 2 4; do
  c=$(median "${times[async-call-$world]}")
  m=$(median "${times[async-$world]}")
  s=$(median "${times[save-$world]}")
  echo "| $((total / world)) MiB per rank | $world | $c | $m | $(awk -v a="$s" -v b="$c" 'BEGIN{printf "%.1fx", a/b}') |"
done
echo
echo "Per round (s): $(for k in single-save save-1 save-2 save-4 async-call-1 async-call-2 async-call-4 async-1 async-2 async-4 single-load load-1 load-2 load-4; do printf '%s:%s; ' "$k" "${times[$k]}"; done)"
