"""python_async_stall.py: the Python baseline for `async_bench stall`.

The guide's synchronous save of the same state (float32 tensors of 64 MiB in a "model"
dict, plus "epoch"), made durable as bench/python_guide_save.py makes it (torch.save to a
temp file, fsync, os.replace, directory fsync): the whole save is the training loop's
stall. The state is changed in place before each save (untimed), as in async_bench.

Run it with the Debian interpreter that has torch: /usr/bin/python3.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from python_guide_save import durable_save, percentile  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="bench_runs")
    parser.add_argument("--state-mib", type=int, default=1024)
    parser.add_argument("--saves", type=int, default=5)
    parser.add_argument("--json-out")
    args = parser.parse_args()

    os.makedirs(args.dir, exist_ok=True)
    save_dir = os.path.abspath(tempfile.mkdtemp(prefix="python-stall-", dir=args.dir))
    chunks = max(1, args.state_mib // 64)
    state = {"epoch": 0, "model": {f"layer{i}.weight": torch.randn(64 * 1024 * 1024 // 4) for i in range(chunks)}}
    samples_us = []
    with torch.no_grad():
        for epoch in range(args.saves):
            state["epoch"] = epoch
            for tensor in state["model"].values():
                tensor.add_(1.0)
            start = time.perf_counter_ns()
            durable_save(state, os.path.join(save_dir, f"checkpoint_epoch_{epoch}.pth"))
            samples_us.append((time.perf_counter_ns() - start) / 1000.0)
            if epoch >= 2:
                os.remove(os.path.join(save_dir, f"checkpoint_epoch_{epoch - 2}.pth"))
    payload_bytes = os.path.getsize(os.path.join(save_dir, f"checkpoint_epoch_{args.saves - 1}.pth"))
    ordered = sorted(samples_us)
    print(f"python_async_stall (torch {torch.__version__}): {args.saves} saves of {args.state_mib} MiB, "
          f"payload {payload_bytes} bytes\n  stall median={percentile(ordered, 50):.1f}us")
    if args.json_out:
        with open(args.json_out, "w") as out:
            json.dump({"side": "python", "kind": "stall", "mode": "python", "state_mib": args.state_mib,
                       "saves": args.saves, "payload_bytes": payload_bytes,
                       "samples_us": [round(s, 1) for s in samples_us]}, out)
            out.write("\n")
    shutil.rmtree(save_dir)


if __name__ == "__main__":
    main()
