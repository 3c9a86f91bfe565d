"""Loads a checkpoint written by ckpt (C++) with Python's torch.load and checks every
value the C++ test put in it. Exits 1 with the differences listed, 0 when all match.

Usage: /usr/bin/python3 check_cpp_checkpoint.py FILE
"""
import sys
import zipfile

import torch


def expected():
    return {
        "epoch": 7,
        "best_acc": 0.8125,
        "name": "ckpt-interop",
        "finished": True,
        "nothing": None,
        "weights": torch.arange(12, dtype=torch.float32).reshape(3, 4) / 4,
        "counts": torch.arange(5, dtype=torch.int64) * 3,
        "halfs": torch.tensor([1.5, -2.0, 0.25], dtype=torch.float16),
        "flags": torch.tensor([True, False, True]),
        "model": {"0.weight": torch.ones(2, 3), "0.bias": torch.zeros(2)},
        "losses": [0.5, 0.25, 0.125],
    }


def compare(want, got, path, problems):
    if isinstance(want, torch.Tensor):
        if not isinstance(got, torch.Tensor):
            problems.append(f"{path}: expected a tensor, got {type(got).__name__}")
        elif want.dtype != got.dtype or want.shape != got.shape or not torch.equal(want, got):
            problems.append(f"{path}: expected {want!r}, got {got!r}")
    elif isinstance(want, dict):
        if not isinstance(got, dict) or list(got.keys()) != list(want.keys()):
            problems.append(f"{path}: expected keys {list(want)}, got {got!r}")
            return
        for key in want:
            compare(want[key], got[key], f"{path}.{key}", problems)
    elif isinstance(want, list):
        if list(got) != want:
            problems.append(f"{path}: expected {want!r}, got {got!r}")
    elif type(want) is not type(got) or want != got:
        problems.append(f"{path}: expected {want!r} ({type(want).__name__}), got {got!r} ({type(got).__name__})")


def main():
    path = sys.argv[1]
    problems = []
    with zipfile.ZipFile(path) as archive:
        bad = archive.testzip()
        if bad is not None:
            problems.append(f"zip CRC mismatch in {bad}")
    state = torch.load(path, map_location="cpu")
    compare(expected(), state, "state", problems)
    for line in problems:
        print(line)
    print("ok" if not problems else f"{len(problems)} differences")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
