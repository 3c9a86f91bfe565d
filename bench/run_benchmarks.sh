#!/usr/bin/env bash
# Builds the benchmarks, runs them, and renders their JSON results into the tables of
# docs/benchmarks.md (bench/render_report.py; the hand-written analysis there is kept).
# Two parts:
#   core    ckpt's epoch save and the guide's Python save side by side, ckpt's also with
#           retention rules (RULES), their fsyncs counted with strace, and the index
#           queries at 100,000 rows;
#   format  the serialization benchmark (bench/run_format_benchmarks.sh): ckpt's
#           save_file/load_file against dd, Python's torch.save/torch.load and libtorch's
#           pickle_save/pickle_load, 1 GiB and 20,000 small tensors;
#   dedupe  the guide's loop (epoch checkpoint and best model of the same state each
#           epoch): bytes written per epoch and time per epoch, ckpt (linking) against
#           the guide's Python (bench/dedupe_bench.cpp, bench/python_guide_dedupe.py);
#   restore a resume's load of a 1 GiB model: restore in place (restore_file, and through
#           the manager) against load_file + load_state_dict and Python's torch.load +
#           load_state_dict, time and peak RSS (bench/restore_bench.cpp,
#           bench/python_restore.py).
#   async   the training thread's stall per checkpoint of a 1 GiB state with asynchronous
#           saves (copy, borrow) against the synchronous save and the guide's Python
#           torch.save + fsync, and a small loop's steps per second checkpointing every
#           epoch, async against none (bench/async_bench.cpp, bench/python_async_stall.py).
#
#   bash bench/run_benchmarks.sh                 # every part
#   bash bench/run_benchmarks.sh --only core     # one part; the other parts' tables
#   bash bench/run_benchmarks.sh --only format   #   stay as they are
#   bash bench/run_benchmarks.sh --only dedupe
#   bash bench/run_benchmarks.sh --only restore
#   bash bench/run_benchmarks.sh --only async
#
# The benchmarks build in a tree of their own, BUILD_DIR (default build-bench), configured
# with -DCKPT_BUILD_BENCH=ON; ./build, the test build, does not build bench/.
#
# Knobs (environment): BUILD_DIR, SAVES per run (500), ROUNDS (6; each round runs both
# sides, the order alternating between rounds so that drift in the machine's fsync latency
# hits both equally), ROWS (100000), ITERATIONS (10000), PYTHON (/usr/bin/python3, which
# must have torch), RULES (the retention rules of the third side, default 'top 3 by
# val_loss (min); every 10 epochs; one per 3600 s'). The format part's knobs are listed in bench/run_format_benchmarks.sh.
# The dedupe part's: DEDUPE_MIB (state size, 128), DEDUPE_EPOCHS (4), DEDUPE_ROUNDS (3).
# The restore part's: RESTORE_MIB (model size, 1024), RESTORE_ROUNDS (5).
# The async part's: ASYNC_MIB (1024), ASYNC_SAVES (saves per run, 4), ASYNC_ROUNDS (3),
# LOOP_EPOCHS (10), LOOP_STEPS (steps per epoch, 4).
#
# Checkpoints are written under the build tree, on purpose not under /tmp: /tmp may be a
# tmpfs, where fsync costs nothing and the comparison would mean nothing.
set -euo pipefail

usage() {
  echo "usage: run_benchmarks.sh [--only core|format|dedupe|restore|async]" >&2
  exit 2
}
only=all
while (($#)); do
  case $1 in
    --only) [[ ${2:-} =~ ^(core|format|dedupe|restore|async)$ ]] || usage; only=$2; shift 2 ;;
    *) usage ;;
  esac
done

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${BUILD_DIR:-$root/build-bench}
saves=${SAVES:-500}
rounds=${ROUNDS:-6}
rows=${ROWS:-100000}
iterations=${ITERATIONS:-10000}
python=${PYTHON:-/usr/bin/python3}
rules=${RULES:-top 3 by val_loss (min); every 10 epochs; one per 3600 s}
runs_dir=$build/bench/runs
results=$build/bench/results

die() {
  echo "run_benchmarks: $*" >&2
  exit 1
}

# --- build (two cores: never more than -j2) ------------------------------------------
# ccache keys on paths relative to the checkout, as scripts/build.sh does, so the library
# compiled for ./build is reused here.
export CCACHE_BASEDIR="$root" CCACHE_NOHASHDIR=true
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCKPT_BUILD_BENCH=ON -DCKPT_BUILD_TESTS=OFF \
  -DCKPT_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$build" -j 2 --target save_bench index_bench format_bench pickle_bench format_whatif dedupe_bench \
  restore_bench async_bench
"$python" -c 'import torch' 2>/dev/null || die "$python cannot import torch (set PYTHON)"

if [[ $only == all || $only == core ]]; then
  rm -rf "$results" "$runs_dir"
  mkdir -p "$results" "$runs_dir"
  fs_type=$(df -T "$runs_dir" | awk 'NR == 2 { print $2 }')
  case $fs_type in
    tmpfs | ramfs) die "$runs_dir is on $fs_type, where fsync is free; set BUILD_DIR to a disk-backed directory" ;;
  esac
  "$python" "$root/bench/run_info.py" start "$results/run.json" --root "$root" --build "$build" --data "$runs_dir" \
    saves="$saves" rounds="$rounds" rows="$rows" iterations="$iterations" rules="$rules"

  # run_side SIDE SAVES JSON_OUT [WRAPPER...]: one run of one side; WRAPPER (strace)
  # prefixes the command when given.
  run_side() {
    local side=$1 n=$2 out=$3
    shift 3
    case $side in
      cpp) "$@" "$build/bench/save_bench" --dir "$runs_dir" --saves "$n" --json-out "$out" ;;
      cpp-rules) "$@" "$build/bench/save_bench" --dir "$runs_dir" --saves "$n" --rules "$rules" --json-out "$out" ;;
      python) "$@" "$python" "$root/bench/python_guide_save.py" --dir "$runs_dir" --saves "$n" --json-out "$out" ;;
    esac
  }

  # --- epoch save latency, all sides in the same run -------------------------------------
  # cpp-rules runs next to cpp, before it in one round and after it in the next.
  for ((round = 1; round <= rounds; round++)); do
    if ((round % 2)); then order="cpp cpp-rules python"; else order="python cpp-rules cpp"; fi
    for side in $order; do
      echo "== round $round/$rounds: $side"
      run_side "$side" "$saves" "$results/save-$side-$round.json"
    done
  done

  # --- fsyncs per save, verified with strace ---------------------------------------------
  # Separate, untimed runs (strace slows every traced call). A run with 0 saves traces the
  # setup alone (creating the index, for ckpt), so (calls with N saves - calls with 0) / N
  # is what the saves themselves do. -y names the file behind each descriptor, which is how
  # the report tells the temp file, the WAL and the directory apart.
  if command -v strace >/dev/null; then
    for side in cpp python; do
      for n in 0 "$saves"; do
        echo "== strace: $side, $n saves"
        run_side "$side" "$n" "$results/strace-$side-$n.json" \
          strace -f -y -o "$results/strace-$side-$n.log" -e trace=fsync,fdatasync,sync,syncfs,sync_file_range,msync \
          >/dev/null
      done
    done
  else
    echo "run_benchmarks: warning: strace not found (apt-get install -y strace); fsyncs will not be counted" >&2
  fi

  # --- index queries at ROWS rows (torch-free) -------------------------------------------
  echo "== index_bench: $rows rows"
  "$build/bench/index_bench" --dir "$runs_dir" --rows "$rows" --iterations "$iterations" --json-out "$results/index.json"
  "$python" "$root/bench/run_info.py" finish "$results/run.json"
  rmdir "$runs_dir" 2>/dev/null || true
fi

if [[ $only == all || $only == format ]]; then
  BUILD_DIR=$build PYTHON=$python bash "$root/bench/run_format_benchmarks.sh"
fi

# --- one write per state: the guide's loop, bytes and time per epoch ----------------------
# Each round runs every contender once, the order rotating between rounds. The state is
# DEDUPE_MIB MiB; each run saves DEDUPE_EPOCHS epochs (two saves each) into a fresh directory.
dedupe_results=$build/bench/results-dedupe
if [[ $only == all || $only == dedupe ]]; then
  dedupe_mib=${DEDUPE_MIB:-128}
  dedupe_epochs=${DEDUPE_EPOCHS:-4}
  dedupe_rounds=${DEDUPE_ROUNDS:-3}
  dedupe_dir=$build/bench/runs-dedupe
  rm -rf "$dedupe_results" "$dedupe_dir"
  mkdir -p "$dedupe_results" "$dedupe_dir"
  case $(df -T "$dedupe_dir" | awk 'NR == 2 { print $2 }') in
    tmpfs | ramfs) die "$dedupe_dir is on a RAM file system, where fsync is free; set BUILD_DIR to a disk-backed directory" ;;
  esac
  "$python" "$root/bench/run_info.py" start "$dedupe_results/run.json" --root "$root" --build "$build" \
    --data "$dedupe_dir" state_mib="$dedupe_mib" epochs="$dedupe_epochs" rounds="$dedupe_rounds"
  contenders=(ckpt ckpt-unannounced ckpt-nolink python)
  for ((round = 1; round <= dedupe_rounds; round++)); do
    for ((i = 0; i < ${#contenders[@]}; i++)); do
      side=${contenders[$(((i + round - 1) % ${#contenders[@]}))]}
      echo "== dedupe round $round/$dedupe_rounds: $side"
      out="$dedupe_results/dedupe-$side-$round.json"
      if [[ $side == python ]]; then
        "$python" "$root/bench/python_guide_dedupe.py" --dir "$dedupe_dir" --state-mib "$dedupe_mib" \
          --epochs "$dedupe_epochs" --json-out "$out"
      else
        "$build/bench/dedupe_bench" --dir "$dedupe_dir" --mode "$side" --state-mib "$dedupe_mib" \
          --epochs "$dedupe_epochs" --json-out "$out"
      fi
    done
  done
  "$python" "$root/bench/run_info.py" finish "$dedupe_results/run.json"
  rmdir "$dedupe_dir" 2>/dev/null || true
fi

# --- restore in place: a resume's load of a large model -----------------------------------
# One file (restore_bench setup, through the manager), read warm from the page cache by
# every side, one load per process; each round runs every side once, the order rotating.
restore_results=$build/bench/results-restore
if [[ $only == all || $only == restore ]]; then
  restore_mib=${RESTORE_MIB:-1024}
  restore_rounds=${RESTORE_ROUNDS:-5}
  restore_dir=$build/bench/runs-restore
  rm -rf "$restore_results" "$restore_dir"
  mkdir -p "$restore_results"
  "$python" "$root/bench/run_info.py" start "$restore_results/run.json" --root "$root" --build "$build" \
    --data "$restore_dir" state_mib="$restore_mib" rounds="$restore_rounds"
  "$build/bench/restore_bench" setup --dir "$restore_dir" --state-mib "$restore_mib"
  cat "$restore_dir/checkpoint_epoch_1.pth" >/dev/null  # warm: every side reads it from the page cache
  contenders=(in-place manager load-file python)
  for ((round = 1; round <= restore_rounds; round++)); do
    for ((i = 0; i < ${#contenders[@]}; i++)); do
      side=${contenders[$(((i + round - 1) % ${#contenders[@]}))]}
      echo "== restore round $round/$restore_rounds: $side"
      out="$restore_results/restore-$side-$round.json"
      if [[ $side == python ]]; then
        "$python" "$root/bench/python_restore.py" --dir "$restore_dir" --state-mib "$restore_mib" --json-out "$out"
      else
        "$build/bench/restore_bench" run --dir "$restore_dir" --mode "$side" --state-mib "$restore_mib" --json-out "$out"
      fi
    done
  done
  "$python" "$root/bench/run_info.py" finish "$restore_results/run.json"
  rm -rf "$restore_dir"
fi

# --- asynchronous saves: the training thread's stall, a loop's steps per second -----------
# Each round runs every contender once, the order rotating between rounds.
async_results=$build/bench/results-async
if [[ $only == all || $only == async ]]; then
  async_mib=${ASYNC_MIB:-1024}
  async_saves=${ASYNC_SAVES:-4}
  async_rounds=${ASYNC_ROUNDS:-3}
  loop_epochs=${LOOP_EPOCHS:-10}
  loop_steps=${LOOP_STEPS:-4}
  async_dir=$build/bench/runs-async
  rm -rf "$async_results" "$async_dir"
  mkdir -p "$async_results" "$async_dir"
  case $(df -T "$async_dir" | awk 'NR == 2 { print $2 }') in
    tmpfs | ramfs) die "$async_dir is on a RAM file system, where fsync is free; set BUILD_DIR to a disk-backed directory" ;;
  esac
  "$python" "$root/bench/run_info.py" start "$async_results/run.json" --root "$root" --build "$build" \
    --data "$async_dir" state_mib="$async_mib" saves="$async_saves" rounds="$async_rounds" \
    loop_epochs="$loop_epochs" loop_steps="$loop_steps"
  contenders=(python sync copy borrow loop-none loop-async loop-sync)
  for ((round = 1; round <= async_rounds; round++)); do
    for ((i = 0; i < ${#contenders[@]}; i++)); do
      side=${contenders[$(((i + round - 1) % ${#contenders[@]}))]}
      echo "== async round $round/$async_rounds: $side"
      out="$async_results/async-$side-$round.json"
      case $side in
        python) "$python" "$root/bench/python_async_stall.py" --dir "$async_dir" --state-mib "$async_mib" \
                  --saves "$async_saves" --json-out "$out" ;;
        loop-*) "$build/bench/async_bench" loop --mode "${side#loop-}" --dir "$async_dir" --epochs "$loop_epochs" \
                  --steps "$loop_steps" --json-out "$out" ;;
        *) "$build/bench/async_bench" stall --mode "$side" --dir "$async_dir" --state-mib "$async_mib" \
             --saves "$async_saves" --json-out "$out" ;;
      esac
    done
  done
  "$python" "$root/bench/run_info.py" finish "$async_results/run.json"
  rmdir "$async_dir" 2>/dev/null || true
fi

# --- the tables ----------------------------------------------------------------------------
parts=()
[[ $only == all || $only == core ]] && parts+=(--core "$results")
[[ $only == all || $only == format ]] && parts+=(--format "$build/bench/results-format")
[[ $only == all || $only == dedupe ]] && parts+=(--dedupe "$dedupe_results")
[[ $only == all || $only == restore ]] && parts+=(--restore "$restore_results")
[[ $only == all || $only == async ]] && parts+=(--async "$async_results")
"$python" "$root/bench/render_report.py" "${parts[@]}" --out "$root/docs/benchmarks.md"
echo "== rendered the tables of $root/docs/benchmarks.md"
