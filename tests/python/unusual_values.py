"""Legitimate torch.save files that are not plain training-state dicts, for
tests/torch/unusual_values_test.cpp.

  unusual_values.py write DIR         writes DIR/<case>.pth for every case
  unusual_values.py check CASE FILE   loads FILE (written back by ckpt) and checks it holds
                                      what ckpt documents for CASE (docs/format.md)

Run with /usr/bin/python3 (Debian's python3-torch, torch 1.13).
"""
import sys

import torch


def sparse():
    return torch.sparse_coo_tensor(torch.tensor([[0, 1, 1], [2, 0, 2]]), torch.tensor([3.0, 4.0, 5.0]), (2, 3))


class OldTensorV1:
    """How PyTorch's backwards-compatibility test pickles a tensor: torch.Tensor() and
    its state (storage, offset, size, stride) for Tensor.__setstate__."""

    def __init__(self, tensor):
        self.tensor = tensor

    def __reduce__(self):
        t = self.tensor
        return (torch.Tensor, (), (t.storage(), t.storage_offset(), tuple(t.size()), t.stride()))


def strided_view():
    return torch.arange(30.0).as_strided([2, 3], [9, 3], 2)


def cases():
    return {
        # torch.seed() values: half of them are >= 2**63.
        "big_int": {"seed": 2**64 - 1, "low": -2**63, "high": 2**63 - 1},
        "mixed_keys": {"d": {1: "one", "two": 2, 2.5: "f", False: "no"}},
        "none_tuple_keys": {"d": {None: 1, (1, 2): "pair"}},
        "dtype": {"dtype": torch.float16, "other": torch.int64},
        "sparse": {"s": sparse()},
        "meta": {"m": torch.empty(3, 4, device="meta"), "w": torch.ones(2)},
        "storage": {"st": torch.arange(4.0).storage()},
        "root_tensor": torch.arange(6.0).reshape(2, 3),
        "root_list": [1, "two", torch.ones(2)],
        "legacy_protocol_4": {"w": torch.arange(5.0), "n": 3},
        "old_tensor": {"x": OldTensorV1(strided_view())},
    }


def write(directory):
    for name, value in cases().items():
        path = f"{directory}/{name}.pth"
        if name == "legacy_protocol_4":
            torch.save(value, path, _use_new_zipfile_serialization=False, pickle_protocol=4)
        else:
            torch.save(value, path)
    print("ok")


def expected_after_round_trip(name):
    """What a file ckpt loaded and saved again holds, read by Python (docs/format.md)."""
    value = cases()[name]
    if name == "big_int":
        # IValue ints are int64: 2**64-1 comes back with the same 64 bits, as -1.
        return {"seed": -1, "low": -2**63, "high": 2**63 - 1}
    if name == "none_tuple_keys":
        # c10 dicts cannot hold None or tuple keys: a list of (key, value) pairs.
        return {"d": [(None, 1), ((1, 2), "pair")]}
    if name == "dtype":
        # As TorchScript holds a dtype: its ScalarType number (Half 5, Long 4).
        return {"dtype": 5, "other": 4}
    if name == "old_tensor":
        return {"x": strided_view()}
    if name == "storage":
        # A bare storage comes back as a 1-D tensor over it.
        return {"st": torch.arange(4.0)}
    return value


def same(a, b):
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            return False
        if a.layout != b.layout or a.dtype != b.dtype or a.shape != b.shape or a.device != b.device:
            return False
        if a.is_meta:
            return a.stride() == b.stride()
        if a.is_sparse:
            return torch.equal(a.coalesce().to_dense(), b.coalesce().to_dense())
        return torch.equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a.keys()) == list(b.keys()) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return type(a) == type(b) and a == b


def check(name, path):
    loaded = torch.load(path)
    want = expected_after_round_trip(name)
    if not same(loaded, want):
        print(f"{name}: differs: loaded {loaded!r}, expected {want!r}")
        sys.exit(1)
    print("ok")


if __name__ == "__main__":
    if sys.argv[1] == "write":
        write(sys.argv[2])
    else:
        check(sys.argv[2], sys.argv[3])
