"""Interop between ckpt (C++) and Python's torch.save / torch.load (torch 1.13), both ways.
Driven by tests/torch/format_interop_test.cpp; run with /usr/bin/python3 (the one with torch).

How values are compared: both languages print what they hold as a *canonical dump*, one
line per value in traversal order, and the dumps are compared line by line. A line names
the value's path and gives everything that must survive a save and a load:

    $['model']['0.weight'] storage #3 nbytes=48 data=<hex of every byte of the storage>
    $['model']['0.weight'] tensor float32 shape=[4,3] stride=[3,1] offset=0 storage=#3 requires_grad=0 data=<hex>
    $['adam']['state'] dict n=6
    $['adam']['state'][0]['step'] tensor float32 shape=[] stride=[] offset=0 storage=#9 ...
    $['adam']['param_groups'][0]['betas'] tuple n=2
    $['adam']['param_groups'][0]['betas'][0] float 0.90000000000000002 0x3feccccccccccccd
    $['values']['text'] str 'na\\xc3\\xafve ...'          (UTF-8 bytes, \\xNN outside printable ASCII)
    $['values']['int_keys'][7] str 'seven'                ([7]: an int key, ['7'] a str key)

Tensors: dtype, shape, strides, storage offset, the exact bytes of the view and of its
whole storage, and storage identity: storages are numbered in order of first use, so two
views share a storage in one dump exactly when they do in the other. Floats: the exact
64 bits. Containers: kind (dict / list / tuple; OrderedDict prints as dict, torch.Size as
tuple) and length, then their items. The C++ side (dump() in format_interop_test.cpp)
prints the same format from the IValues it holds, so a difference anywhere is reported
with its path, and neither side's comparison goes through ckpt's own writer or reader.

Commands:

  write DIR
      Python writes, C++ reads. Writes the payloads of python_payloads() to DIR/<name>.pt,
      each with DIR/<name>.pt.dump: the dump of what torch.load itself reads back from the
      file (asserted equal to the dump of the object saved); a few that the C++ test checks
      by itself (bytes, a 5 MB tensor); and DIR/bad_*.pt, payloads the C++ reader must
      refuse (disallowed globals, ints beyond 64 bits).

  check [--weights-only LABEL]... [--expect-fail LABEL]... LABEL=FILE...
      C++ writes, Python reads. FILE was written by ckpt::save_file, FILE.dump is the C++
      dump of the state it saved. LABEL picks the Python mirror of that state built here
      independently (expected_cpp_state): "full", "float_free", or "tampered" (the full
      mirror; the C++ test changes one value in the file it saves); or "large" (a 5 MB
      tensor and a view of it, checked by formula, without a dump). Checks, per file: the
      zip (CRC-32s, 64-byte aligned records, archive/ names, byteorder, version); the
      pickle (only opcodes torch 1.13's weights_only unpickler accepts, plus BINFLOAT;
      only allowlisted globals, never torch.jit._pickle.*); torch.load's dump equals the
      C++ dump and the mirror's dump; views share storage (a write through one is seen
      through the other); the model and optimizer load into nn.Sequential and Adam, which
      then take a step; with --weights-only, torch.load(weights_only=True) succeeds and
      gives the same dump, otherwise it fails only because of BINFLOAT (torch 1.13's
      restricted unpickler lacks it). Prints "RESULT LABEL ok|fail" per file; exits 0
      when every file's result is what was expected (--expect-fail: a failure).
"""
import argparse
import datetime
import difflib
import math
import os
import pickle
import pickletools
import struct
import sys
import warnings
import zipfile

import torch
from torch import nn

warnings.filterwarnings("ignore")

ALIGNMENT = 64
LARGE = 1_300_000  # float32 elements: 5.2 MB, more than ckpt's 1 MiB write and 4 MiB read chunks
DTYPES = [
    torch.float16, torch.bfloat16, torch.float32, torch.float64,
    torch.int8, torch.uint8, torch.int16, torch.int32, torch.int64,
    torch.bool, torch.complex64, torch.complex128,
]


# ----------------------------------------------------------------------------------------
# The canonical dump (keep in step with dump() in tests/torch/format_interop_test.cpp)


def _escape(text):
    out = []
    for byte in text.encode("utf-8"):
        if 0x20 <= byte < 0x7F and byte not in (ord("\\"), ord("'")):
            out.append(chr(byte))
        else:
            out.append(f"\\x{byte:02x}")
    return "".join(out)


def _float_text(value):
    bits = struct.unpack("<Q", struct.pack("<d", value))[0]
    shown = "nan" if math.isnan(value) else "%.17g" % value
    return f"{shown} 0x{bits:016x}"


def _ints(values):
    return "[" + ",".join(str(int(v)) for v in values) + "]"


def dtype_name(dtype):
    return str(dtype).replace("torch.", "")


def dump(obj):
    lines = []
    storage_ids = {}

    def tensor(t, path):
        requires_grad = t.requires_grad
        t = t.detach()
        storage = t.storage()
        if storage.nbytes() == 0:
            sid = "empty"
        else:
            key = storage.data_ptr()
            if key not in storage_ids:
                storage_ids[key] = len(storage_ids)
                raw = bytes(storage.untyped().tolist())
                lines.append(f"{path} storage #{storage_ids[key]} nbytes={len(raw)} data={raw.hex()}")
            sid = f"#{storage_ids[key]}"
        data = bytes(t.contiguous().reshape(-1).view(torch.uint8).tolist())
        lines.append(
            f"{path} tensor {dtype_name(t.dtype)} shape={_ints(t.shape)} stride={_ints(t.stride())} "
            f"offset={t.storage_offset()} storage={sid} requires_grad={int(requires_grad)} data={data.hex()}")

    def walk(value, path):
        if value is None:
            lines.append(f"{path} None")
        elif isinstance(value, bool):
            lines.append(f"{path} bool {int(value)}")
        elif isinstance(value, int):
            lines.append(f"{path} int {value}")
        elif isinstance(value, float):
            lines.append(f"{path} float {_float_text(value)}")
        elif isinstance(value, str):
            lines.append(f"{path} str '{_escape(value)}'")
        elif isinstance(value, torch.Tensor):  # nn.Parameter too
            tensor(value, path)
        elif isinstance(value, dict):  # OrderedDict too (its _metadata is not an item)
            lines.append(f"{path} dict n={len(value)}")
            for key, item in value.items():
                if isinstance(key, str):
                    walk(item, f"{path}['{_escape(key)}']")
                elif isinstance(key, int) and not isinstance(key, bool):
                    walk(item, f"{path}[{key}]")
                else:
                    raise TypeError(f"{path}: a dict key of type {type(key).__name__}")
        elif isinstance(value, tuple):  # torch.Size too
            lines.append(f"{path} tuple n={len(value)}")
            for i, item in enumerate(value):
                walk(item, f"{path}[{i}]")
        elif isinstance(value, list):
            lines.append(f"{path} list n={len(value)}")
            for i, item in enumerate(value):
                walk(item, f"{path}[{i}]")
        else:
            raise TypeError(f"{path}: cannot dump a {type(value).__name__}")

    walk(obj, "$")
    return lines


def read_dump(path):
    with open(path, encoding="utf-8") as f:
        return f.read().splitlines()


def write_dump(lines, path):
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def diff_dumps(want, got, want_name, got_name, limit=24):
    """Empty when equal, else a few lines of unified diff (long lines cut)."""
    if want == got:
        return []
    cut = lambda lines: [line if len(line) <= 400 else line[:400] + "..." for line in lines]
    diff = list(difflib.unified_diff(cut(want), cut(got), want_name, got_name, n=0, lineterm=""))
    return diff[:limit] + ([f"... {len(diff) - limit} more diff lines"] if len(diff) > limit else [])


# ----------------------------------------------------------------------------------------
# Values built by formula: the same in C++ (format_interop_test.cpp), so both sides can
# construct them independently.


def dtype_tensor(dtype):
    """12 values, shape (3, 4), exactly representable in `dtype`."""
    x = torch.arange(12, dtype=torch.float64).reshape(3, 4)
    if dtype.is_complex:
        return torch.complex(x / 4 - 1, 2 - x / 2).to(dtype)
    if dtype.is_floating_point:
        return (x / 4 - 1).to(dtype)
    if dtype == torch.bool:
        return x.remainder(3) == 0
    if dtype == torch.uint8:
        return (x * 21).to(dtype)
    return (x * 11 - 60).to(dtype)


def dtype_tensors():
    tensors = {dtype_name(dtype): dtype_tensor(dtype) for dtype in DTYPES}
    tensors["special_float32"] = torch.tensor(
        [math.nan, math.inf, -math.inf, -0.0, 1.401298464324817e-45, 3.4028234663852886e38, 1.1920928955078125e-07],
        dtype=torch.float32)
    tensors["special_float64"] = torch.tensor(
        [math.nan, math.inf, -math.inf, -0.0, 5e-324, 1.7976931348623157e308, 2.220446049250313e-16],
        dtype=torch.float64)
    tensors["special_float16"] = torch.tensor([math.inf, -0.0, 65504.0, 5.960464477539063e-08], dtype=torch.float16)
    return tensors


def view_tensors():
    """Views of one float32 storage (and of one int64 storage) in every shape that matters."""
    base = torch.arange(24, dtype=torch.float32)
    grid = base.view(4, 6)
    int_base = torch.arange(10, dtype=torch.int64)
    return {
        "base": base,
        "grid": grid,
        "offset_slice": base[5:11],
        "transpose": grid.t(),
        "strided": base[::2],
        "column": grid[:, 2],
        "zero_d": base[7],
        "left": grid[:, :3],
        "right": grid[:, 3:],
        "empty": torch.zeros(0, 3),
        "int_base": int_base,
        "int_tail": int_base[6:],
        "expanded": torch.arange(3, dtype=torch.float32).expand(4, 3),  # stride 0
    }


# ----------------------------------------------------------------------------------------
# Python writes, C++ reads


class TrainerConfig:  # a user class: pickled as the global __main__.TrainerConfig
    def __init__(self):
        self.lr = 0.1


def python_payloads():
    torch.manual_seed(1234)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))
    adam = torch.optim.Adam(model.parameters(), lr=1e-3)
    adamw = torch.optim.AdamW(model.parameters(), lr=2e-3)
    sgd = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(sgd, step_size=2, gamma=0.5)
    for optimizer in (adam, adamw, sgd):
        for _ in range(3):
            optimizer.zero_grad()
            model(torch.randn(8, 3)).pow(2).mean().backward()
            optimizer.step()
    scheduler.step()

    shared_list = [1, 2]
    views = view_tensors()
    views["same_object_a"] = views["base"]  # one tensor object pickled twice (memo)
    views["same_object_b"] = views["base"]
    values = {
        "int": 42, "zero": 0, "neg": -7, "byte_edge": 255, "short_edge": 65535,
        "int32_max": 2**31 - 1, "int32_min": -2**31, "beyond_int32": 2**31, "below_int32": -2**31 - 1,
        "big": 2**62 + 12345, "int64_max": 2**63 - 1, "int64_min": -2**63, "neg_big": -2**40,
        "float": 0.1, "neg_zero": -0.0, "inf": math.inf, "neg_inf": -math.inf, "nan": math.nan,
        "tiny": 5e-324, "huge": 1.7976931348623157e308,
        "true": True, "false": False, "none": None,
        "text": "naïve café — 東京 🚀", "empty_text": "", "escapes": "quote' back\\slash\nnewline\ttab\x00nul",
        "int_list": [1, 2, 3], "float_list": [0.5, -1.25], "bool_list": [True, False], "str_list": ["a", "β"],
        "mixed": [1, "two", 3.0, None, True, [4, [5]], (6, 7), {"eight": 8}],
        "tuple": (1, 2.5, "x", None, True), "pair": (1, 2), "one_tuple": ("solo",),
        "empty_tuple": (), "empty_list": [], "empty_dict": {}, "one_item": [5],
        "nested": {"a": {"b": {"c": [[], [[1]]]}}},
        "int_keys": {0: "zero", 7: "seven", -1: "minus one"},
        "alias_a": shared_list, "alias_b": shared_list,
        "size": torch.Size([2, 3]),
        "param": nn.Parameter(torch.arange(4, dtype=torch.float32)),
        "frozen_param": nn.Parameter(torch.arange(3, dtype=torch.float64), requires_grad=False),
        "grad_tensor": torch.ones(2, requires_grad=True),
        # Past the pickler's batches of 1000 (APPENDS / SETITEMS) and 256 memo entries.
        "long_list": list(range(2500)),
        "many_keys": {f"key{i}": i for i in range(1200)},
        "odd_keys": {"": "empty key", "ключ": "non-ASCII key"},
    }
    legacy = {
        "epoch": 5, "lr": 0.5, "name": "legacy ✓", "model": model.state_dict(),
        "views": view_tensors(), "dtypes": dtype_tensors(),
        "values": {"big": 2**63 - 1, "neg": -2**40, "tuple": (1, "x"), "int_keys": {3: [1.5]}},
    }
    # name: (object, how): True the zip format, False the legacy one, an int a pickle protocol.
    payloads = {
        "module_state_dict": (model.state_dict(), True),
        "trainer_checkpoint": ({
            "epoch": 3, "best_acc": 0.8125, "model": model.state_dict(),
            "adam": adam.state_dict(), "adamw": adamw.state_dict(), "sgd": sgd.state_dict(),
            "scheduler": scheduler.state_dict(),
        }, True),
        "dtypes": (dtype_tensors(), True),
        "views": (views, True),
        "values": (values, True),
        "single_entry": ({"t": torch.arange(6).reshape(2, 3)}, True),
        # A complex tensor that requires grad (complex parameters are trainable).
        "complex_parameter": ({"z": nn.Parameter(torch.complex(torch.arange(3.0), -torch.arange(3.0)))}, True),
        "legacy": (legacy, False),
        # Protocol 4: FRAME, MEMOIZE, SHORT_BINUNICODE, STACK_GLOBAL.
        "protocol4": ({"model": model.state_dict(), "views": view_tensors(), "values": values}, 4),
    }
    # Checked by the C++ test itself (no dump: bytes are not a dump kind; large is large).
    large = torch.arange(LARGE, dtype=torch.float32)
    unchecked = {
        "bytes": {"all": bytes(range(256)), "ascii": b"abc"},  # _codecs.encode(str, 'latin1')
        "empty_bytes": {"empty": b""},  # protocol 2 pickles b"" as __builtin__.bytes()
        "large": {"large": large, "tail": large[-10:]},
    }
    refused = {
        "bad_date": {"epoch": 1, "when": datetime.date(2024, 1, 2)},
        "bad_namespace": {"model": {"w": torch.ones(2)}, "args": argparse.Namespace(lr=0.1, epochs=3)},
        "bad_class": {"config": TrainerConfig()},
        "bad_function": {"fn": math.sqrt},
        "bad_set": {"s": {1, 2}},
        "bad_int_2_70": {"n": 2**70},
        "bad_int_minus_2_70": {"n": -2**70},
        "bad_int_2_63": {"n": 2**63},
        "bad_int_2_64": {"n": 2**64},
        "bad_int_below_int64": {"n": -2**63 - 1},
    }
    return payloads, unchecked, refused


def command_write(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    payloads, unchecked, refused = python_payloads()
    for name, (obj, how) in payloads.items():
        path = os.path.join(out_dir, name + ".pt")
        if how is False:
            torch.save(obj, path, _use_new_zipfile_serialization=False)
        elif how is True:
            torch.save(obj, path)
        else:
            torch.save(obj, path, pickle_protocol=how)
        reread = dump(torch.load(path))
        problems = diff_dumps(dump(obj), reread, name + " (saved)", name + " (torch.load)")
        if problems:  # torch itself does not read back what it saved: nothing to test against
            print("\n".join(problems))
            return 1
        write_dump(reread, path + ".dump")
    for name, obj in list(unchecked.items()) + list(refused.items()):
        torch.save(obj, os.path.join(out_dir, name + ".pt"))
    torch.save({"when": datetime.date(2024, 1, 2)}, os.path.join(out_dir, "bad_legacy_date.pt"),
               _use_new_zipfile_serialization=False)
    print(f"wrote {len(payloads) + len(unchecked)} payloads and {len(refused) + 1} refused ones to {out_dir}")
    return 0


# ----------------------------------------------------------------------------------------
# C++ writes, Python reads


def expected_cpp_state(with_floats):
    """The Python mirror of cpp_state() in format_interop_test.cpp, built independently."""
    state = {"epoch": 7, "dtypes": dtype_tensors() if with_floats else
             {dtype_name(d): dtype_tensor(d) for d in DTYPES}, "views": view_tensors()}
    state["model"] = {
        "0.weight": (torch.arange(6, dtype=torch.float32).reshape(2, 3) - 2.5) / 2,
        "0.bias": torch.tensor([0.5, -0.5]),
        "1.weight": torch.ones(2),
        "1.bias": torch.zeros(2),
        "1.running_mean": torch.tensor([0.25, -0.25]),
        "1.running_var": torch.tensor([1.5, 2.0]),
        "1.num_batches_tracked": torch.tensor(9),
    }
    shapes = [(2, 3), (2,), (2,), (2,)]
    if with_floats:
        state["optimizer"] = {
            "state": {i: {"step": torch.tensor(3.0),
                          "exp_avg": torch.full(shapes[i], 0.125 * (i + 1)),
                          "exp_avg_sq": torch.full(shapes[i], 0.0625)} for i in range(4)},
            "param_groups": [{"lr": 0.001, "betas": (0.9, 0.999), "eps": 1e-08, "weight_decay": 0,
                              "amsgrad": False, "maximize": False, "foreach": None, "capturable": False,
                              "differentiable": False, "fused": None, "params": [0, 1, 2, 3]}],
        }
    else:
        state["int_keyed"] = {i: {"step": torch.tensor(3 + i), "buffer": torch.full(shapes[i], i)} for i in range(4)}
    values = {
        "int": 42, "zero": 0, "neg": -7, "byte_edge": 255, "short_edge": 65535,
        "int32_max": 2**31 - 1, "int32_min": -2**31, "beyond_int32": 2**31, "below_int32": -2**31 - 1,
        "int64_max": 2**63 - 1, "int64_min": -2**63, "neg_big": -2**40,
        "true": True, "false": False, "none": None,
        "text": "naïve café — 東京 🚀", "empty_text": "", "escapes": "quote' back\\slash\nnewline\ttab",
        "int_list": [1, 2, 3], "bool_list": [True, False], "str_list": ["a", "β"],
        "mixed": [1, "two", None, True, [4, [5]], (6, 7), {"eight": 8}],
        "tuple": (1, "x", None, True, (2, 3)), "one_tuple": ("solo",),
        "empty_tuple": (), "empty_list": [], "empty_dict": {}, "one_item": [5],
        "single_entry": {"only": 1},
        "nested": {"a": {"b": {"c": [[], [[1]]]}}},
        "int_keys": {0: "zero", 7: "seven", -1: "minus one"},
        "long_list": list(range(2500)),
        "many_keys": {f"key{i}": i for i in range(1200)},
        "odd_keys": {"": "empty key", "ключ": "non-ASCII key"},
    }
    if with_floats:
        values.update({"float": 0.1, "neg_zero": -0.0, "inf": math.inf, "neg_inf": -math.inf, "nan": math.nan,
                       "tiny": 5e-324, "huge": 1.7976931348623157e308, "float_list": [0.5, -1.25, 1e300],
                       "float_tuple": (0.9, 0.999)})
    state["values"] = values
    state["param"] = torch.arange(4, dtype=torch.float32).requires_grad_(True)
    return state


def _allowed_opcodes():
    import torch._weights_only_unpickler as restricted
    names = {name for name in dir(restricted)
             if isinstance(getattr(restricted, name), bytes) and len(getattr(restricted, name)) == 1
             and getattr(pickle, name, None) == getattr(restricted, name)}
    return names | {"BINFLOAT"}


ALLOWED_GLOBALS = {"torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter", "collections.OrderedDict"}
STORAGE_GLOBALS = {f"torch.{t}Storage" for t in
                   ["Half", "BFloat16", "Float", "Double", "Char", "Byte", "Short", "Int", "Long", "Bool",
                    "ComplexFloat", "ComplexDouble"]}


def check_zip(path, problems):
    with zipfile.ZipFile(path) as archive:
        bad = archive.testzip()
        if bad is not None:
            problems.append(f"zip: CRC-32 mismatch in {bad}")
        infos = archive.infolist()
        names = [info.filename for info in infos]
        storages = sorted((n for n in names if n.startswith("archive/data/")), key=lambda n: int(n.rsplit("/", 1)[1]))
        want = ["archive/data.pkl", "archive/byteorder"] + [f"archive/data/{i}" for i in range(len(storages))] + \
               ["archive/version"]
        if names != want:
            problems.append(f"zip: records {names}, expected {want}")
        if "archive/byteorder" not in names or archive.read("archive/byteorder") != b"little":
            problems.append("zip: byteorder record is not b'little'")
        if "archive/version" not in names or archive.read("archive/version") != b"3\n":
            problems.append("zip: version record is not b'3\\n'")
        for info in infos:
            if info.compress_type != zipfile.ZIP_STORED:
                problems.append(f"zip: {info.filename} is compressed")
        with open(path, "rb") as f:
            for info in infos:
                f.seek(info.header_offset)
                header = f.read(30)
                if header[:4] != b"PK\x03\x04":
                    problems.append(f"zip: no local header for {info.filename} at {info.header_offset}")
                    continue
                name_length, extra_length = struct.unpack("<HH", header[26:30])
                data_offset = info.header_offset + 30 + name_length + extra_length
                if data_offset % ALIGNMENT != 0:
                    problems.append(f"zip: {info.filename} data at offset {data_offset}, not a multiple of {ALIGNMENT}")
        pickles = [name for name in names if name.endswith("/data.pkl")]
        return archive.read(pickles[0]) if pickles else b""


def check_pickle(pickle_bytes, problems):
    """Returns how many BINFLOATs the pickle has."""
    allowed = _allowed_opcodes()
    floats = 0
    for opcode, arg, pos in pickletools.genops(pickle_bytes):
        if opcode.name == "BINFLOAT":
            floats += 1
        if opcode.name not in allowed:
            problems.append(f"pickle: opcode {opcode.name} at byte {pos} is not accepted by torch 1.13's weights_only")
        if opcode.name == "GLOBAL":
            name = arg.replace(" ", ".")
            if name.startswith("torch.jit"):
                problems.append(f"pickle: global {name} (torch.jit._pickle.* must never appear)")
            elif name not in ALLOWED_GLOBALS and name not in STORAGE_GLOBALS:
                problems.append(f"pickle: global {name} is not in the allowlist")
    return floats


def check_sharing(state, problems):
    views = state.get("views")
    if not isinstance(views, dict):
        problems.append("views: missing")
        return
    views = {k: v.detach() for k, v in views.items()}
    views["offset_slice"].fill_(-1)
    if not torch.equal(views["base"][5:11], torch.full((6,), -1.0)):
        problems.append("views: a write through offset_slice is not seen through base")
    views["right"].fill_(-2)
    if not torch.equal(views["grid"][:, 3:], torch.full((4, 3), -2.0)) or views["left"].eq(-2).any():
        problems.append("views: a write through right is not seen through grid (or leaks into left)")
    views["transpose"][1, 0] = 100
    if views["column"][0].item() != 2 or views["base"][1].item() != 100:
        problems.append("views: transpose does not alias base")
    views["int_tail"].fill_(-5)
    if views["int_base"][6:].tolist() != [-5] * 4:
        problems.append("views: a write through int_tail is not seen through int_base")
    pointers = {views[k].storage().data_ptr() for k in
                ["base", "grid", "offset_slice", "transpose", "strided", "column", "zero_d", "left", "right"]}
    if len(pointers) != 1:
        problems.append(f"views: the float32 views use {len(pointers)} storages, not 1")


def check_consumers(state, problems):
    """The model and optimizer state go into real torch objects, which then work."""
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    try:
        model.load_state_dict(state["model"])
    except Exception as error:  # noqa: BLE001
        problems.append(f"model: load_state_dict failed: {error}")
        return
    if "optimizer" not in state:
        return
    optimizer = torch.optim.Adam(model.parameters())
    try:
        optimizer.load_state_dict(state["optimizer"])
        model(torch.ones(4, 3)).sum().backward()
        optimizer.step()
    except Exception as error:  # noqa: BLE001
        problems.append(f"optimizer: load_state_dict / step failed: {error}")
        return
    step = optimizer.state[model[0].weight]["step"]
    if not torch.equal(step, torch.tensor(4.0)):
        problems.append(f"optimizer: step after one more step is {step!r}, expected tensor(4.)")


def check_large(state, problems):
    """{"large": arange(LARGE) float32, "tail": its last 10 elements}: by formula, not by dump."""
    large, tail = state["large"], state["tail"]
    if large.dtype != torch.float32 or not torch.equal(large, torch.arange(LARGE, dtype=torch.float32)):
        problems.append(f"large: not arange({LARGE}) in float32")
    if tail.storage().data_ptr() != large.storage().data_ptr() or tail.storage_offset() != LARGE - 10:
        problems.append("large: tail is not a view of large's storage at offset LARGE - 10")


def check_file(label, path, weights_only, problems):
    pickle_bytes = check_zip(path, problems)
    floats = check_pickle(pickle_bytes, problems)
    if label == "large":
        check_large(torch.load(path, map_location="cpu"), problems)
        return
    want = read_dump(path + ".dump")
    state = torch.load(path, map_location="cpu")
    got = dump(state)
    problems += diff_dumps(want, got, "C++ dump", "torch.load")
    mirror = dump(expected_cpp_state(with_floats=label != "float_free"))
    problems += diff_dumps(mirror, got, "Python mirror", "torch.load")
    if weights_only:
        if floats:
            problems.append(f"weights_only: the state has {floats} floats (BINFLOAT)")
        try:
            restricted = dump(torch.load(path, map_location="cpu", weights_only=True))
            problems += diff_dumps(want, restricted, "C++ dump", "torch.load(weights_only=True)")
        except Exception as error:  # noqa: BLE001
            problems.append(f"weights_only: torch.load(weights_only=True) failed: {error}")
    elif floats:
        try:
            torch.load(path, map_location="cpu", weights_only=True)
            problems.append("weights_only: torch 1.13 accepted BINFLOAT (the check's assumption is wrong)")
        except Exception as error:  # noqa: BLE001
            if f"Unsupported operand {pickle.BINFLOAT[0]}" not in str(error):
                problems.append(f"weights_only: refused for another reason than BINFLOAT: {error}")
    check_sharing(state, problems)
    check_consumers(torch.load(path, map_location="cpu"), problems)


def command_check(argv):
    parser = argparse.ArgumentParser(prog="check_cpp_payload.py check")
    parser.add_argument("--weights-only", action="append", default=[])
    parser.add_argument("--expect-fail", action="append", default=[])
    parser.add_argument("files", nargs="+", metavar="LABEL=FILE")
    args = parser.parse_args(argv)
    as_expected = True
    for spec in args.files:
        label, path = spec.split("=", 1)
        problems = []
        try:
            check_file(label, path, label in args.weights_only, problems)
        except Exception as error:  # noqa: BLE001
            problems.append(f"exception: {type(error).__name__}: {error}")
        for line in problems:
            print(f"{label}: {line}")
        print(f"RESULT {label} {'fail' if problems else 'ok'}")
        as_expected &= bool(problems) == (label in args.expect_fail)
    return 0 if as_expected else 1


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "write":
        return command_write(sys.argv[2])
    if len(sys.argv) >= 3 and sys.argv[1] == "check":
        return command_check(sys.argv[2:])
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main())
