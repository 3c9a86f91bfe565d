"""python_guide_dedupe.py: the Python baseline for bench/dedupe_bench.cpp.

The guide's loop: each epoch, save_epoch_checkpoint(state, epoch) and then
save_best_model(state) of the same dict, each a torch.save to `<file>.tmp` and os.replace,
made durable as bench/python_guide_save.py makes it (fsync of the file, then of the
directory), with the guide's cleanup of old epochs. Every tensor is changed in place
before each epoch (add_, as optimizer.step() does). Records per epoch what
dedupe_bench.cpp records: the bytes torch.save wrote into the files (seam_bytes), this
process's write_bytes and cancelled_write_bytes from /proc/self/io, and the two saves'
wall time.

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
from python_guide_save import cleanup_epoch_checkpoints, durable_save  # noqa: E402


def proc_io():
    values = {}
    with open("/proc/self/io") as f:
        for line in f:
            key, value = line.split(":")
            values[key] = int(value)
    return values["write_bytes"], values["cancelled_write_bytes"]


def make_state(mib):
    floats = mib * (1 << 20) // 4 // 8
    model = {f"layer{i}.weight": torch.randn(floats) for i in range(8)}
    return {"epoch": 0, "best_acc": 0.0, "val_acc": 0.0, "model": model}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="bench_runs")
    parser.add_argument("--state-mib", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--json-out")
    args = parser.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    save_dir = tempfile.mkdtemp(prefix="dedupe-py-", dir=args.dir)
    state = make_state(args.state_mib)
    seconds, seam, written, cancelled = [], [], [], []
    with torch.no_grad():
        for epoch in range(1, args.epochs + 1):
            for tensor in state["model"].values():
                tensor.add_(1.0)
            state["epoch"] = epoch
            state["val_acc"] = 0.5 + 0.01 * epoch
            best_path = os.path.join(save_dir, "best_model.pth")
            epoch_path = os.path.join(save_dir, f"checkpoint_epoch_{epoch}.pth")
            io_before = proc_io()
            start = time.perf_counter()
            durable_save(state, epoch_path)
            cleanup_epoch_checkpoints(save_dir, 5)
            durable_save(state, best_path)
            seconds.append(time.perf_counter() - start)
            io_after = proc_io()
            seam.append(os.path.getsize(epoch_path) + os.path.getsize(best_path))
            written.append(io_after[0] - io_before[0])
            cancelled.append(io_after[1] - io_before[1])
            state["best_acc"] = state["val_acc"]
    state_bytes = os.path.getsize(os.path.join(save_dir, "best_model.pth"))
    shutil.rmtree(save_dir)
    print(f"python_guide_dedupe: state {state_bytes / (1 << 20):.1f} MiB, {args.epochs} epochs, "
          f"seam {seam[-1] / state_bytes:.2f}x, block layer {(written[-1] - cancelled[-1]) / state_bytes:.2f}x per epoch")
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"side": "python", "torch": torch.__version__, "state_bytes": state_bytes, "epochs": args.epochs,
                       "seconds": seconds, "seam_bytes": seam, "write_bytes": written,
                       "cancelled_write_bytes": cancelled, "loadavg_1min": os.getloadavg()[0]}, f)
            f.write("\n")


if __name__ == "__main__":
    main()
