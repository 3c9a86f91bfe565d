"""python_guide_save.py: the Python baseline for bench/save_bench.cpp.

The guide's CheckpointManager.save_epoch_checkpoint: `_save` (torch.save to
`<file>.tmp`, then os.replace onto the final name) followed by
`_cleanup_epoch_checkpoints` (glob checkpoint_epoch_*.pth, parse the epochs, sort
descending, delete those beyond max_to_keep). The guide's `_save` is atomic but not
durable; here it is made durable the standard way (flush + fsync of the temp file before
the rename, fsync of the directory after it), because comparing a durable save with one
that leaves its bytes in the page cache would only measure the missing fsyncs. The
cleanup's unlinks are not synced, exactly as in the guide and in ckpt.

Logging is left out on both sides (ckpt's logger is silenced in save_bench).

Each save is also split into phases named as save_bench names ckpt's (serialize_write,
fsync_temp, rename, fsync_dir, rotation), by reading the clock between the steps.

Run it with the Debian interpreter that has torch: /usr/bin/python3.
"""

import argparse
import glob
import json
import os
import re
import shutil
import sys
import tempfile
import time

import torch

EPOCH_CKPT_PREFIX = "checkpoint_epoch_"
EPOCH_NAME = re.compile(re.escape(EPOCH_CKPT_PREFIX) + r"(\d+)\.pth")


def fsync_directory(path):
    # A rename is durable only once the directory holding both names is synced.
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def no_mark(phase):
    pass


def durable_save(state, path, mark=no_mark):
    """The guide's _save, plus the two fsyncs that make it survive a power loss.

    `mark(phase)` is called as each phase ends, for the benchmark's breakdown.
    """
    tmp_path = path + ".tmp"
    with open(tmp_path, "wb") as tmp_file:
        torch.save(state, tmp_file)
        tmp_file.flush()
        mark("serialize_write")
        os.fsync(tmp_file.fileno())
    mark("fsync_temp")
    os.replace(tmp_path, path)
    mark("rename")
    fsync_directory(os.path.dirname(path))
    mark("fsync_dir")


def cleanup_epoch_checkpoints(save_dir, max_to_keep):
    """The guide's _cleanup_epoch_checkpoints: keep the max_to_keep highest epochs."""
    found = []
    for path in glob.glob(os.path.join(save_dir, EPOCH_CKPT_PREFIX + "*.pth")):
        match = EPOCH_NAME.fullmatch(os.path.basename(path))
        if match:
            found.append((int(match.group(1)), path))
    found.sort(reverse=True)
    for _, path in found[max_to_keep:]:
        os.remove(path)


def save_epoch_checkpoint(save_dir, state, epoch, max_to_keep, mark=no_mark):
    durable_save(state, os.path.join(save_dir, f"{EPOCH_CKPT_PREFIX}{epoch}.pth"), mark)
    cleanup_epoch_checkpoints(save_dir, max_to_keep)
    mark("rotation")


class PhaseTimer:
    """Sums the time of each phase over all saves."""

    def __init__(self):
        self.totals_ns = {}
        self.last = 0

    def start(self):
        self.last = time.perf_counter_ns()

    def mark(self, phase):
        now = time.perf_counter_ns()
        self.totals_ns[phase] = self.totals_ns.get(phase, 0) + now - self.last
        self.last = now

    def means_us(self, saves):
        return {phase: round(total / 1000.0 / max(saves, 1), 1) for phase, total in self.totals_ns.items()}


def percentile(sorted_samples, p):
    # Nearest rank, as bench/bench_support.hpp and bench/render_report.py compute it.
    if not sorted_samples:
        return 0.0
    rank = -(-p * len(sorted_samples) // 100)  # ceil without floats
    return sorted_samples[min(max(int(rank), 1), len(sorted_samples)) - 1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="bench_runs", help="parent of the fresh checkpoint directory")
    parser.add_argument("--saves", type=int, default=500)
    parser.add_argument("--keep", type=int, default=5)
    parser.add_argument("--json-out", help="write the samples here")
    parser.add_argument("--keep-dir", action="store_true", help="leave the checkpoint directory behind")
    args = parser.parse_args()

    os.makedirs(args.dir, exist_ok=True)
    save_dir = os.path.abspath(tempfile.mkdtemp(prefix="python-", dir=args.dir))
    state = {"weights": torch.randn(1024), "epoch": 0}
    samples_us = []
    phases = PhaseTimer()
    for epoch in range(args.saves):
        state["epoch"] = epoch
        start = time.perf_counter_ns()
        phases.start()
        save_epoch_checkpoint(save_dir, state, epoch, args.keep, phases.mark)
        samples_us.append((time.perf_counter_ns() - start) / 1000.0)

    # Same check as save_bench: rotation must have left exactly the newest epochs.
    left = sorted(os.listdir(save_dir))
    expected = [f"{EPOCH_CKPT_PREFIX}{e}.pth" for e in range(max(0, args.saves - args.keep), args.saves)]
    if sorted(left) != sorted(expected):
        sys.exit(f"python_guide_save: {save_dir}: expected {expected}, found {left}")
    payload_bytes = os.path.getsize(os.path.join(save_dir, expected[-1])) if expected else 0

    ordered = sorted(samples_us)
    mean = sum(ordered) / len(ordered) if ordered else 0.0
    print(f"python_guide_save (torch {torch.__version__}): {args.saves} saves, payload {payload_bytes} bytes, "
          f"dir {save_dir}\n  n={len(ordered)} mean={mean:.1f}us median={percentile(ordered, 50):.1f}us "
          f"p95={percentile(ordered, 95):.1f}us")
    if args.json_out:
        with open(args.json_out, "w") as out:
            json.dump({"side": "python", "torch": torch.__version__, "saves": args.saves,
                       "max_to_keep": args.keep, "payload_bytes": payload_bytes, "dir": save_dir,
                       "phases_us": phases.means_us(args.saves),
                       "samples_us": [round(s, 1) for s in samples_us]}, out)
            out.write("\n")
    if not args.keep_dir:
        shutil.rmtree(save_dir)


if __name__ == "__main__":
    main()
