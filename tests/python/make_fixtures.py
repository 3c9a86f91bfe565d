"""Builds tests/fixtures/: checkpoints in the zip layout torch 2.x writes, made with torch 1.13
(the only torch installed here). Run once by hand; its outputs are committed:

    /usr/bin/python3 tests/python/make_fixtures.py tests/fixtures

For each fixture, torch 1.13's torch.save writes the object to memory; the zip is then
rewritten record by record into the layout of torch 2.6's torch.save:

    <name>/data.pkl                the pickle, unchanged (2.x pickles these objects with the
                                   same protocol 2 opcodes and the same globals)
    <name>/.format_version         "1" (storages ordered numerically by key)
    <name>/.storage_alignment      "64"
    <name>/byteorder               "little"
    <name>/data/0, data/1, ...     the storages, in numeric key order (1.13 sorts them as
                                   strings: data/10 before data/2)
    <name>/version                 "3\\n"
    <name>/.data/serialization_id  40 decimal digits, as torch's writer makes them

where <name> is the file name without its extension: torch 2.x names the archive folder
after the file (only in-memory buffers get "archive"). Records are stored (ZIP_STORED),
and each local header carries PyTorch's "FB" extra field, padded so that the record's data
starts at a multiple of 64 bytes, as PyTorch's writer does (caffe2 getPadding: the field
is always there, even when no padding is needed). Timestamps are fixed, so running this
again gives the same bytes.

Beside each fixture, <fixture>.dump is the canonical dump (see check_cpp_payload.py) of
what torch 1.13's torch.load reads back from the rewritten file; this script asserts it
equals the dump of the object that was saved. The C++ test compares its own load with it.
"""
import copy
import io
import os
import struct
import sys
import zipfile
import zlib

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check_cpp_payload import (  # noqa: E402
    ALIGNMENT, diff_dumps, dtype_tensors, dump, view_tensors, write_dump)

DATE_TIME = (1980, 1, 1, 0, 0, 0)


def fixture_model():
    """Parameters and buffers set by formula (the C++ test recomputes them)."""
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))
    with torch.no_grad():
        for i, parameter in enumerate(model.parameters()):
            parameter.copy_((torch.arange(parameter.numel(), dtype=torch.float32).reshape(parameter.shape) - i) / 8)
        model[1].running_mean.copy_(torch.arange(4, dtype=torch.float32) / 4)
        model[1].running_var.copy_(torch.arange(4, dtype=torch.float32) + 1)
        model[1].num_batches_tracked.fill_(7)
    return model


def fixture_checkpoint():
    model = fixture_model()
    # The optimizer trains a copy, so the saved model keeps its formula values.
    trained = copy.deepcopy(model)
    adam = torch.optim.Adam(trained.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.StepLR(adam, step_size=2, gamma=0.5)
    inputs = torch.linspace(-1, 1, 24).reshape(8, 3)
    for _ in range(2):
        adam.zero_grad()
        trained(inputs).pow(2).mean().backward()
        adam.step()
        scheduler.step()
    return {
        "epoch": 3,
        "best_acc": 0.8125,
        "model": model.state_dict(),
        "optimizer": adam.state_dict(),
        "scheduler": scheduler.state_dict(),
        "dtypes": dtype_tensors(),
        "views": view_tensors(),
        "values": {"big": 2**63 - 1, "neg": -2**40, "text": "torch 2.x ✓", "tuple": (1, "x", None),
                   "int_keys": {3: [1.5, 2.5]}},
    }


FIXTURES = {
    # A trainer checkpoint: 40+ storages, so numeric order (data/9, data/10) matters.
    "torch2_checkpoint.pt": fixture_checkpoint,
    # torch.save(model.state_dict(), "resnet_tiny-epoch3.pth"): an OrderedDict with _metadata.
    "resnet_tiny-epoch3.pth": lambda: fixture_model().state_dict(),
}


def numpy_metric_checkpoint():
    """A trainer checkpoint whose metric is a NumPy scalar (np.mean(...) returns one):
    Python's torch.load reads it, ckpt refuses it, naming numpy.core.multiarray.scalar."""
    import numpy as np
    return {"epoch": 3, "model": fixture_model().state_dict(),
            "val_acc": np.mean(np.array([0.75, 0.875]))}


# Files ckpt must refuse: no .dump (the C++ tests check the refusal, not the values);
# verified by torch 1.13's torch.load reading back an equal object.
REFUSED_FIXTURES = {
    "numpy_metric.pt": numpy_metric_checkpoint,
}


def fb_padding(offset, name):
    """PyTorch's padding extra field for a local header at `offset` (no ZIP64 here)."""
    start = offset + 30 + len(name) + 4
    padding = (ALIGNMENT - start % ALIGNMENT) % ALIGNMENT
    return b"FB" + struct.pack("<H", padding) + b"Z" * padding


def write_torch2_layout(obj, path):
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    with zipfile.ZipFile(buffer) as archive:
        records = {info.filename.split("/", 1)[1]: archive.read(info) for info in archive.infolist()}
    storages = sorted((name for name in records if name.startswith("data/")), key=lambda name: int(name[5:]))
    assert set(records) == {"data.pkl", "version"} | set(storages), sorted(records)
    assert records["version"] == b"3\n", records["version"]
    names_hash = zlib.crc32("".join(sorted(records)).encode())
    data_crc = zlib.crc32(b"".join(records[name] for name in storages))
    serialization_id = f"{names_hash:020d}{data_crc:020d}".encode()
    ordered = ([("data.pkl", records["data.pkl"]), (".format_version", b"1"), (".storage_alignment", b"64"),
                ("byteorder", b"little")] + [(name, records[name]) for name in storages] +
               [("version", b"3\n"), (".data/serialization_id", serialization_id)])
    root = os.path.splitext(os.path.basename(path))[0]
    with open(path, "wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as archive:
        for name, data in ordered:
            info = zipfile.ZipInfo(f"{root}/{name}", date_time=DATE_TIME)
            info.compress_type = zipfile.ZIP_STORED
            info.extra = fb_padding(f.tell(), info.filename.encode())
            archive.writestr(info, data)
    return root, len(storages)


def verify(path, root, expected):
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None
        with open(path, "rb") as f:
            for info in archive.infolist():
                assert info.filename.startswith(root + "/"), info.filename
                f.seek(info.header_offset)
                header = f.read(30)
                name_length, extra_length = struct.unpack("<HH", header[26:30])
                assert (info.header_offset + 30 + name_length + extra_length) % ALIGNMENT == 0, info.filename
    reread = dump(torch.load(path))
    problems = diff_dumps(expected, reread, "saved", "torch.load of the rewritten file")
    assert not problems, "\n".join(problems)
    return reread


def verify_refused(path, root, expected):
    """The layout checks of verify(), then the values compared directly (dump() knows no NumPy)."""
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None
        assert all(info.filename.startswith(root + "/") for info in archive.infolist())
    reread = torch.load(path)
    assert reread.keys() == expected.keys(), (reread.keys(), expected.keys())
    for key, value in expected.items():
        if isinstance(value, dict):
            assert all(torch.equal(reread[key][k], v) for k, v in value.items()), key
        else:
            assert type(reread[key]) is type(value) and reread[key] == value, (key, reread[key], value)


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "fixtures")
    os.makedirs(out_dir, exist_ok=True)
    for name, build in FIXTURES.items():
        torch.manual_seed(0)
        obj = build()
        path = os.path.join(out_dir, name)
        root, storages = write_torch2_layout(obj, path)
        write_dump(verify(path, root, dump(obj)), path + ".dump")
        print(f"{path}: folder {root}/, {storages} storages, {os.path.getsize(path)} bytes")
    for name, build in REFUSED_FIXTURES.items():
        torch.manual_seed(0)
        obj = build()
        path = os.path.join(out_dir, name)
        root, storages = write_torch2_layout(obj, path)
        verify_refused(path, root, obj)
        print(f"{path}: folder {root}/, {storages} storages, {os.path.getsize(path)} bytes (ckpt refuses it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
