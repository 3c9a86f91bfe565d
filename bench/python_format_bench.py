"""python_format_bench.py: Python's torch.save / torch.load on the benchmark states.

The Python side of bench/format_bench.cpp, one operation per process, measured the same
way: a monotonic clock around the call, the process's CPU time (resource.getrusage,
all threads) before and after, the RSS just before it and the peak RSS (ru_maxrss)
after it. The states are those of bench/bench_states.hpp: case A, 256 float32
tensors of 4 MiB (1 GiB); case B, 20,000 float32 tensors of 4 KiB (80 MiB).

  python_format_bench.py startup                         import torch, nothing else
  python_format_bench.py save --case A --out FILE        the guide's save made durable:
                                                         torch.save to FILE.tmp, flush,
                                                         os.fsync, os.replace, fsync of the
                                                         directory (bench/python_guide_save.py)
  python_format_bench.py load --case A --file FILE       torch.load(FILE), then the time to
                                                         sum every tensor

Run it with the Debian interpreter that has torch: /usr/bin/python3.
"""

import argparse
import json
import os
import resource
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from python_guide_save import durable_save  # noqa: E402  (the same durable save as the core benchmark)

CASES = {"A": (256, 1 << 20), "B": (20000, 1024)}  # tensors, float32 elements per tensor
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def tensor_key(i):
    return f"layer{i:05d}.weight"


def make_state(case):
    tensors, elements = CASES[case]
    return {tensor_key(i): torch.empty(elements, dtype=torch.float32).uniform_(-1.0, 1.0) for i in range(tensors)}


def current_rss_kib():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE_KIB


class Reading:
    def __init__(self):
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self.at = time.perf_counter()
        self.user_s = usage.ru_utime
        self.sys_s = usage.ru_stime
        self.maxrss_kib = usage.ru_maxrss
        self.minflt = usage.ru_minflt
        self.majflt = usage.ru_majflt


def span(prefix, a, b):
    return {f"{prefix}wall_s": b.at - a.at, f"{prefix}user_s": b.user_s - a.user_s, f"{prefix}sys_s": b.sys_s - a.sys_s,
            f"{prefix}minflt": b.minflt - a.minflt, f"{prefix}majflt": b.majflt - a.majflt}


def memory(rss_before, before, after):
    # mono_*: the operation's window on CLOCK_MONOTONIC (perf_counter's clock on Linux), to cut
    # a `perf record -k CLOCK_MONOTONIC` profile to it.
    return {"rss_before_kib": rss_before, "maxrss_before_kib": before.maxrss_kib, "peak_rss_kib": after.maxrss_kib,
            "mono_start_s": before.at, "mono_end_s": after.at}


def sum_all(tensors):
    return sum(t.sum().item() for t in tensors)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["startup", "save", "load"])
    parser.add_argument("--case", default="A", choices=sorted(CASES))
    parser.add_argument("--out", "--file", dest="file")
    parser.add_argument("--json-out")
    args = parser.parse_args()

    result = {"tool": "python", "command": args.command, "torch": torch.__version__}
    if args.command == "save":
        state = make_state(args.case)
        rss_before = current_rss_kib()
        before = Reading()
        durable_save(state, os.path.abspath(args.file))
        after = Reading()
        result.update(span("", before, after))
        result.update(memory(rss_before, before, after))
        tensors, elements = CASES[args.case]
        result.update(state_bytes=tensors * elements * 4, file_bytes=os.path.getsize(args.file))
    elif args.command == "load":
        rss_before = current_rss_kib()
        before = Reading()
        state = torch.load(args.file)
        after = Reading()
        result.update(span("", before, after))
        result.update(memory(rss_before, before, after))
        tensors, elements = CASES[args.case]
        loaded = list(state.values())
        if len(loaded) != tensors or any(t.dtype != torch.float32 or t.numel() != elements for t in loaded):
            sys.exit(f"python_format_bench: {args.file}: unexpected content")
        sum_start = Reading()
        checksum = sum_all(loaded)
        sum_end = Reading()
        result.update(span("touch_", sum_start, sum_end))
        result.update(peak_rss_after_touch_kib=sum_end.maxrss_kib, tensors=len(loaded),
                      state_bytes=tensors * elements * 4, checksum=checksum)
    if args.json_out:
        with open(args.json_out, "w") as out:
            json.dump(result, out)
            out.write("\n")


if __name__ == "__main__":
    main()
