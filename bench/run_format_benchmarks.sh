#!/usr/bin/env bash
# The serialization benchmark: ckpt's save_file/load_file beside dd, Python's torch.save/
# torch.load and libtorch's torch::pickle_save/pickle_load, on
#   case A: 256 float32 tensors of 4 MiB (1 GiB), and
#   case B: 20,000 float32 tensors of 4 KiB (80 MiB),
# every operation in its own process, the contenders alternating round by round. Results
# go to BUILD_DIR/bench/results-format; bench/render_report.py turns them into the
# serialization tables of docs/benchmarks.md.
#
#   bash bench/run_benchmarks.sh --only format   # builds the programs, runs this, renders
#
# Knobs (environment):
#   BUILD_DIR             build tree with the benchmarks built (build-bench)
#   PYTHON                /usr/bin/python3, which must have torch
#   FORMAT_ROUNDS         rounds of every contender (7)
#   FORMAT_CASES          "A B"
#   FORMAT_COLD           1: also cold-cache loads (the file's pages dropped first)
#   FORMAT_WHATIF_ROUNDS  rounds of the case-A what-ifs (bench/format_whatif.cpp,
#                         bench/whatif_headers.py); 0 skips them (3)
#   FORMAT_DIAGNOSE       1: one strace'd run of each save (write sizes, fsync time) and, if
#                         perf works, CPU profiles of ckpt's save and loads, left in the
#                         results directory for reading by hand (not rendered) (0)
#   FORMAT_QUIET_WAIT     before each operation, wait up to this many seconds (60) for the
#   FORMAT_MAX_BUSY       rest of the machine to use at most this many cores (0.3),
#   FORMAT_QUIET_BUDGET   but no more than this many seconds in all (900); the operation
#                         then runs anyway, and the report says how busy the machine was
#
# Test data lives under BUILD_DIR/bench/format-data, on the build tree's disk (not /tmp,
# which may be a tmpfs where fsync is free), and is deleted at the end. At most five
# 1 GiB files exist there at once (ckpt's, Python's, pickle_save's, the manager's, dd's
# output); dd's input, a copy of ckpt's file, is kept in /dev/shm (memory) meanwhile.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${BUILD_DIR:-$root/build-bench}
python=${PYTHON:-/usr/bin/python3}
rounds=${FORMAT_ROUNDS:-7}
cases=${FORMAT_CASES:-A B}
cold=${FORMAT_COLD:-1}
quiet_wait=${FORMAT_QUIET_WAIT:-60}
quiet_budget=${FORMAT_QUIET_BUDGET:-900}
max_busy=${FORMAT_MAX_BUSY:-0.3}
diagnose=${FORMAT_DIAGNOSE:-0}
whatif_rounds=${FORMAT_WHATIF_ROUNDS:-3}
results=$build/bench/results-format
data=$build/bench/format-data

die() {
  echo "run_format_benchmarks: $*" >&2
  exit 1
}

for program in format_bench pickle_bench format_whatif; do
  [[ -x $build/bench/$program ]] || die "$build/bench/$program is not built (bash bench/run_benchmarks.sh --only format builds it)"
done
"$python" -c 'import torch' 2>/dev/null || die "$python cannot import torch (set PYTHON)"
command -v fincore >/dev/null || die "fincore (util-linux) is needed to check the page cache"

fmt=$build/bench/format_bench
pkl=$build/bench/pickle_bench
wif=$build/bench/format_whatif
pyb=$root/bench/python_format_bench.py
timed=("$python" "$root/bench/timed_run.py")

rm -rf "$results" "$data"
mkdir -p "$results" "$data"
echo "$quiet_budget" >"$results/quiet-budget"
# dd's input: ckpt's file copied into memory (tmpfs), 1 GiB of RAM while the case runs.
shm=/dev/shm
[[ -d $shm && -w $shm ]] || shm=$build/bench
dd_source=$(mktemp "$shm/ckpt-format-bench-dd-source.XXXXXX")
trap 'rm -rf "$data" "$dd_source"' EXIT
fs_type=$(df -T "$data" | awk 'NR == 2 { print $2 }')
case $fs_type in
  tmpfs | ramfs) die "$data is on $fs_type, where fsync is free; set BUILD_DIR to a disk-backed directory" ;;
esac
free_kib=$(df -k --output=avail "$data" | tail -1)
((free_kib > 7 * 1024 * 1024)) || die "$data: $((free_kib / 1024)) MiB free; case A needs up to 5 GiB (7 GiB with a margin)"

"$python" "$root/bench/run_info.py" start "$results/run.json" --root "$root" --build "$build" --data "$data" \
  rounds="$rounds" whatif_rounds="$whatif_rounds" cases="$cases" cold="$cold" quiet_wait_s="$quiet_wait" \
  max_busy_cores="$max_busy" quiet_budget_s="$quiet_budget"

# measure NAME [timed_run options] -- COMMAND...: one measured process. NAME.proc.json
# gets the process's totals; the C++ and Python programs write NAME.json themselves.
# When the array `wrap` is set (strace ...), it prefixes the command.
wrap=()
measure() {
  local name=$1
  shift
  local options=()
  while [[ $1 != -- ]]; do
    options+=("$1")
    shift
  done
  shift
  echo "== $name"
  "${timed[@]}" --json-out "$results/$name.proc.json" --wait-quiet "$quiet_wait" --max-busy "$max_busy" \
    --quiet-budget "$results/quiet-budget" \
    "${options[@]}" -- "${wrap[@]}" "$@"
}

# perf_run NAME COMMAND...: a CPU profile (cpu-clock samples with call graphs) of one
# ckpt operation, cut to the operation's window (the programs report it on
# CLOCK_MONOTONIC, which perf record -k uses); the profile is summarized and deleted.
perf_run() {
  local name=$1
  shift
  echo "== $name (perf)"
  perf record -q -k CLOCK_MONOTONIC -e cpu-clock -F 1999 --call-graph dwarf,16384 \
    -o "$results/$name.perf.data" -- "$@" --json-out "$results/$name.json" >/dev/null 2>&1
  local window
  window=$("$python" -c 'import json,sys; d=json.load(open(sys.argv[1])); print("%.6f,%.6f" % (d["mono_start_s"], d["mono_end_s"]))' "$results/$name.json")
  perf report -i "$results/$name.perf.data" --time "$window" --no-children --sort dso,symbol -g none \
    --percent-limit 1.5 --stdio 2>/dev/null | grep -v '^#' | grep '%' >"$results/$name.perf.self.txt" || true
  perf report -i "$results/$name.perf.data" --time "$window" --children --sort symbol -g none \
    --percent-limit 4 --stdio 2>/dev/null | grep -v '^#' | grep '%' >"$results/$name.perf.children.txt" || true
  rm -f "$results/$name.perf.data"
}

# The contenders in round r, in an order shuffled with the round number as the seed: each
# runs in various positions and after various others (a rotation would keep the same
# neighbours, and what a process leaves behind, such as freed memory, reaches the next).
order() {
  local r=$1
  shift
  "$python" -c 'import random, sys; items = sys.argv[2:]; random.Random(int(sys.argv[1])).shuffle(items); print("\n".join(items))' "$r" "$@"
}

files_of() { # the files a load contender reads
  case $1 in
    ckpt-eager | ckpt-mmap | cat) echo "$data/ckpt.pth" ;;
    python) echo "$data/python.pth" ;;
    pickle) echo "$data/pickle.pth" ;;
    manager) find "$data/manager" -maxdepth 1 -type f | sort ;;
  esac
}

save_op() { # save_op CASE CONTENDER NAME
  local c=$1 who=$2 name=$3
  case $who in
    ckpt) rm -f "$data/ckpt.pth"
      measure "$name" -- "$fmt" save --case "$c" --out "$data/ckpt.pth" --json-out "$results/$name.json" ;;
    dd) rm -f "$data/dd.out"
      # The disk's limit: the same bytes (a copy of ckpt's file in memory, on tmpfs, so
      # that reading them costs dd little and the same every time) written with 1 MiB
      # writes and one fsync at the end.
      measure "$name" --stderr "$results/$name.dd.log" -- dd if="$dd_source" of="$data/dd.out" bs=1M conv=fsync
      rm -f "$data/dd.out" ;;
    python) rm -f "$data/python.pth"
      measure "$name" -- "$python" "$pyb" save --case "$c" --out "$data/python.pth" --json-out "$results/$name.json" ;;
    pickle) rm -f "$data/pickle.pth"
      measure "$name" -- "$pkl" save --case "$c" --out "$data/pickle.pth" --json-out "$results/$name.json" ;;
    manager) rm -rf "$data/manager"
      measure "$name" -- "$fmt" manager-save --case "$c" --dir "$data/manager" --json-out "$results/$name.json" ;;
  esac
  sync
}

load_op() { # load_op CASE CONTENDER NAME warm|cold
  local c=$1 who=$2 name=$3 cache=$4
  local extra=() file
  while read -r file; do
    extra+=(--resident "$file")
    if [[ $cache == cold ]]; then
      extra+=(--evict "$file")
    else
      cat "$file" >/dev/null  # warm: whatever else on the machine may have evicted meanwhile
    fi
  done < <(files_of "$who")
  case $who in
    ckpt-eager) measure "$name" "${extra[@]}" -- "$fmt" load --case "$c" --file "$data/ckpt.pth" --json-out "$results/$name.json" ;;
    ckpt-mmap) measure "$name" "${extra[@]}" -- "$fmt" load --mmap --case "$c" --file "$data/ckpt.pth" --json-out "$results/$name.json" ;;
    python) measure "$name" "${extra[@]}" -- "$python" "$pyb" load --case "$c" --file "$data/python.pth" --json-out "$results/$name.json" ;;
    pickle) measure "$name" "${extra[@]}" -- "$pkl" load --case "$c" --file "$data/pickle.pth" --json-out "$results/$name.json" ;;
    cat) measure "$name" "${extra[@]}" --stdout-null -- cat "$data/ckpt.pth" ;;
    manager) measure "$name" "${extra[@]}" -- "$fmt" manager-load --case "$c" --dir "$data/manager" --json-out "$results/$name.json" ;;
  esac
}

# --- start-up cost of each kind of process ---------------------------------------------
for ((r = 1; r <= rounds; r++)); do
  for who in $(order "$r" ckpt pickle python); do
    case $who in
      ckpt) measure "startup-ckpt-$r" -- "$fmt" startup ;;
      pickle) measure "startup-pickle-$r" -- "$pkl" startup ;;
      python) measure "startup-python-$r" -- "$python" "$pyb" startup ;;
    esac
  done
done

for c in $cases; do
  savers=(ckpt dd python pickle)
  loaders=(ckpt-eager ckpt-mmap python pickle cat)
  if [[ $c == A ]]; then
    savers+=(manager)
    loaders+=(manager)
  fi
  # dd copies ckpt's file: make one first (untimed; this also warms up the binaries).
  save_op "$c" ckpt "$c-prepare-ckpt"
  cp "$data/ckpt.pth" "$dd_source"

  # --- saves --------------------------------------------------------------------------
  for ((r = 1; r <= rounds; r++)); do
    for who in $(order "$r" "${savers[@]}"); do save_op "$c" "$who" "$c-save-$who-$r"; done
  done

  # --- loads, warm page cache ------------------------------------------------------------
  # Every file was just written, so it is in the page cache; read each once more to be
  # sure. Each load records how much of its file was resident when it started.
  for who in ckpt-eager python pickle manager; do
    [[ " ${loaders[*]} " == *" $who "* ]] || continue
    while read -r file; do cat "$file" >/dev/null; done < <(files_of "$who")
  done
  for ((r = 1; r <= rounds; r++)); do
    for who in $(order "$r" "${loaders[@]}"); do load_op "$c" "$who" "$c-warm-$who-$r" warm; done
  done

  # --- loads, cold page cache ------------------------------------------------------------
  if [[ $cold == 1 ]]; then
    for ((r = 1; r <= rounds; r++)); do
      for who in $(order "$r" "${loaders[@]}"); do load_op "$c" "$who" "$c-cold-$who-$r" cold; done
    done
  fi

  # How a memory-mapped load could read the local headers of a cold file
  # (bench/whatif_headers.py): through the mapping as now, or without read-around.
  if [[ $cold == 1 && $c == A ]] && ((whatif_rounds > 0)); then
    for ((r = 1; r <= whatif_rounds; r++)); do
      for who in $(order "$r" touch willneed pread); do
        measure "$c-wheaders-$who-$r" -- "$python" "$root/bench/whatif_headers.py" "$data/ckpt.pth" --variant "$who" \
          --json-out "$results/$c-wheaders-$who-$r.json"
      done
    done
  fi

  # --- diagnostics: where a save's time goes ---------------------------------------------
  # One more run of each save under strace, which times each fsync (-T) and shows the
  # sizes of the writes. Not among the timed runs.
  if [[ $diagnose == 1 ]] && command -v strace >/dev/null; then
    for who in ckpt dd python pickle; do
      wrap=(strace -f -T -o "$results/$c-strace-$who.log" -e trace=write,pwrite64,fsync,fdatasync,rename,renameat,renameat2)
      save_op "$c" "$who" "$c-strace-$who"
      wrap=()
    done
  fi
  # CPU profiles of ckpt's own operations.
  if [[ $diagnose == 1 ]] && perf record -q -e cpu-clock -o "$results/perf-check.data" true >/dev/null 2>&1; then
    rm -f "$results/perf-check.data"
    rm -f "$data/ckpt.pth"
    perf_run "$c-perf-save" "$fmt" save --case "$c" --out "$data/ckpt.pth"
    sync
    cat "$data/ckpt.pth" >/dev/null
    perf_run "$c-perf-eager" "$fmt" load --case "$c" --file "$data/ckpt.pth"
    perf_run "$c-perf-mmap" "$fmt" load --mmap --case "$c" --file "$data/ckpt.pth"
  fi

  # --- what-ifs: the bounds under case A's save and eager load ------------------------------
  # bench/format_whatif.cpp, alternating with ckpt's own save and load and with dd, so that
  # the disk's drift reaches all alike. Only ckpt's file is kept for them.
  if [[ $c == A ]] && ((whatif_rounds > 0)); then
    find "$data" -mindepth 1 -maxdepth 1 ! -name ckpt.pth -exec rm -rf {} +
    sync
    for ((r = 1; r <= whatif_rounds; r++)); do
      for who in $(order "$r" ckpt dd plain hash hash-copy hash-overlap); do
        case $who in
          ckpt | dd) save_op "$c" "$who" "$c-wsave-$who-$r" ;;
          *) rm -f "$data/whatif.pth"
            measure "$c-wsave-$who-$r" -- "$wif" save --case "$c" --variant "$who" --out "$data/whatif.pth" \
              --json-out "$results/$c-wsave-$who-$r.json"
            rm -f "$data/whatif.pth"
            sync ;;
        esac
      done
      measure "$c-whash-hash-$r" -- "$wif" hash --case "$c" --json-out "$results/$c-whash-hash-$r.json"
    done
    cat "$data/ckpt.pth" >/dev/null
    for ((r = 1; r <= whatif_rounds; r++)); do
      for who in $(order "$r" ckpt-eager read read-crc thp-read-crc map-crc); do
        case $who in
          ckpt-eager) load_op "$c" "$who" "$c-wload-$who-$r" warm ;;
          *) measure "$c-wload-$who-$r" --resident "$data/ckpt.pth" -- "$wif" load --variant "$who" \
            --file "$data/ckpt.pth" --json-out "$results/$c-wload-$who-$r.json" ;;
        esac
      done
    done
  fi

  rm -rf "${data:?}"/*
  : >"$dd_source"
  sync
done

"$python" "$root/bench/run_info.py" finish "$results/run.json"
echo "== serialization results in $results"
