#!/usr/bin/python3
"""Writes the hostile (and legitimate-but-unusual) payload files of tests/hostile.

    make_hostile.py OUT_DIR [--only NAME ...]

Pure standard library: pickles are written opcode by opcode and zip archives byte by
byte, so every hostile construction is exactly what its comment says (torch.save could
not write most of them). The legitimate files that only torch can write faithfully
(sparse, meta, legacy protocol 4, ...) are written with torch when `import torch` works,
and skipped otherwise (said on stdout and in the manifest).

Writes OUT_DIR/<name>.pth for each case and OUT_DIR/manifest.json:
    {name: {"file": path, "file_bytes": n, "tensor_bytes": n, "skipped": null | reason}}
`tensor_bytes` is the storage bytes the file really holds (what a full load may
legitimately allocate); the runner's memory bound is built from it and the file's size.
"""

import json
import os
import struct
import sys
import zlib

MiB = 1 << 20

# ---- pickle, by hand -------------------------------------------------------------------

PROTO = b"\x80"
STOP = b"."
MARK = b"("
EMPTY_DICT = b"}"
EMPTY_LIST = b"]"
EMPTY_TUPLE = b")"
TUPLE = b"t"
TUPLE2 = b"\x86"
LIST = b"l"
SETITEM = b"s"
SETITEMS = b"u"
APPENDS = b"e"
REDUCE = b"R"
BINPERSID = b"Q"
NEWTRUE = b"\x88"
NEWFALSE = b"\x89"
NONE = b"N"


class Pickle:
    """A pickle written opcode by opcode (protocol 2 unless told)."""

    def __init__(self, protocol=2):
        self.out = bytearray(PROTO + bytes([protocol]))
        self.next_memo = 0

    def op(self, *codes):
        for code in codes:
            self.out += code
        return self

    def put(self):
        """BINPUT / LONG_BINPUT the top of the stack; returns its memo index."""
        index = self.next_memo
        self.next_memo += 1
        self.out += b"q" + bytes([index]) if index < 256 else b"r" + struct.pack("<I", index)
        return index

    def get(self, index):
        self.out += b"h" + bytes([index]) if index < 256 else b"j" + struct.pack("<I", index)
        return self

    def int(self, n):
        if 0 <= n < 256:
            self.out += b"K" + bytes([n])
        elif 0 <= n < 65536:
            self.out += b"M" + struct.pack("<H", n)
        elif -(2**31) <= n < 2**31:
            self.out += b"J" + struct.pack("<i", n)
        else:  # LONG1: two's complement, little-endian, minimal length
            length = 1
            while not -(2 ** (8 * length - 1)) <= n < 2 ** (8 * length - 1):
                length += 1
            self.out += b"\x8a" + bytes([length]) + n.to_bytes(length, "little", signed=True)
        return self

    def float(self, x):
        self.out += b"G" + struct.pack(">d", x)
        return self

    def str(self, s):
        return self.utf8(s.encode("utf-8"))

    def utf8(self, raw):
        """BINUNICODE with these exact bytes (which need not be valid UTF-8)."""
        self.out += b"X" + struct.pack("<I", len(raw)) + raw
        return self

    def bool(self, b):
        self.out += NEWTRUE if b else NEWFALSE
        return self

    def glob(self, module, name):
        self.out += b"c" + module.encode() + b"\n" + name.encode() + b"\n"
        return self

    def tuple_of_ints(self, values):
        self.out += MARK
        for v in values:
            self.int(v)
        self.out += TUPLE
        return self

    def tensor(self, key, numel, offset, sizes, strides, storage_class="FloatStorage", legacy=False):
        """torch._utils._rebuild_tensor_v2((persistent storage id), offset, sizes, strides,
        requires_grad=False, OrderedDict()) as torch.save writes it."""
        self.glob("torch._utils", "_rebuild_tensor_v2")
        self.out += MARK
        self.out += MARK
        self.str("storage").glob("torch", storage_class).str(key).str("cpu").int(numel)
        if legacy:
            self.out += NONE  # the legacy format's view_metadata
        self.out += TUPLE + BINPERSID
        self.int(offset).tuple_of_ints(sizes).tuple_of_ints(strides).bool(False)
        self.glob("collections", "OrderedDict").op(EMPTY_TUPLE, REDUCE)
        self.out += TUPLE + REDUCE
        return self

    def stop(self):
        self.out += STOP
        return bytes(self.out)


# ---- zip, by hand ----------------------------------------------------------------------


def local_header(name, data_size, crc, offset_in_file):
    """A stored local file header, padded (PyTorch's 'FB' extra field) so the data starts
    at a multiple of 64 bytes."""
    name = name.encode()
    fixed = 30 + len(name)
    pad = (-(offset_in_file + fixed + 4)) % 64
    extra = struct.pack("<HH", 0x4246, pad) + b"Z" * pad
    return struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 0, 0, 0, crc, data_size, data_size, len(name), len(extra)) + name + extra


def central_entry(name, crc, csize, usize, header_offset, extra=b""):
    name = name.encode()
    return (struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 0, 0, 0, crc, csize, usize, len(name), len(extra), 0, 0, 0, 0,
                        header_offset) + name + extra)


def end_record(count, cd_size, cd_offset):
    return struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, count, count, cd_size, cd_offset, 0)


def crc32(data):
    return zlib.crc32(data) & 0xFFFFFFFF


def zip_archive(records, root="archive"):
    """A valid stored archive of [(name, bytes)] under `root`/."""
    out = bytearray()
    central = bytearray()
    for name, data in records:
        offset = len(out)
        out += local_header(f"{root}/{name}", len(data), crc32(data), offset)
        out += data
        central += central_entry(f"{root}/{name}", crc32(data), len(data), len(data), offset)
    cd_offset = len(out)
    out += central
    out += end_record(len(records), len(central), cd_offset)
    return bytes(out)


def payload(pickle, storages=()):
    """A torch zip payload: data.pkl, byteorder, data/<key> for each (key, bytes), version."""
    return zip_archive([("data.pkl", pickle), ("byteorder", b"little")] + [(f"data/{k}", v) for k, v in storages] +
                       [("version", b"3\n")])


def floats(*values):
    return struct.pack(f"<{len(values)}f", *values)


# ---- the cases -------------------------------------------------------------------------
# Each returns (bytes, tensor_bytes), or writes the file itself and returns (None,
# tensor_bytes). Registered in CASES below, in the order the runner runs them.


def case_baseline():
    """The tiny valid file every operation's baseline is measured on."""
    p = Pickle().op(EMPTY_DICT).op(MARK)
    p.str("w").tensor("0", 4, 0, [4], [1])
    p.str("step").int(1)
    p.op(SETITEMS)
    return payload(p.stop(), [("0", floats(1, 2, 3, 4))]), 16


def case_control():
    """A normal small state dict: tensors (one a view sharing a storage), scalars, a nested
    dict, a list, a tuple; what torch.save({...}) writes."""
    w = floats(*[0.5 * i for i in range(12)])
    b = floats(0.25, -1.5, 3.0)
    steps = struct.pack("<4q", 1, 2, 3, 4)
    p = Pickle().op(EMPTY_DICT)
    p.put()
    p.op(MARK)
    p.str("model").op(EMPTY_DICT).put()
    p.op(MARK)
    p.str("weight").tensor("0", 12, 0, [3, 4], [4, 1])
    p.str("weight_t").tensor("0", 12, 0, [4, 3], [1, 4])
    p.str("bias").tensor("1", 3, 0, [3], [1])
    p.op(SETITEMS)
    p.str("steps").tensor("2", 4, 0, [4], [1], storage_class="LongStorage")
    p.str("epoch").int(7)
    p.str("lr").float(0.001)
    p.str("name").str("resnet-ish")
    p.str("done").bool(False)
    p.str("extra").op(NONE)
    p.str("milestones").op(EMPTY_LIST, MARK).int(10).int(20).int(30).op(APPENDS)
    p.str("betas").float(0.9).float(0.999).op(TUPLE2)
    p.op(SETITEMS)
    return payload(p.stop(), [("0", w), ("1", b), ("2", steps)]), len(w) + len(b) + len(steps)


def case_memo_string_list():
    """{'x': [s] * 3000}: one 1 MiB str memoized once (BINPUT), then 2,999 BINGETs of 2
    bytes each. Python loads it as 3,000 references to one string."""
    s = "s" * MiB
    p = Pickle().op(EMPTY_DICT)
    p.put()
    p.str("x").op(EMPTY_LIST).put()
    p.op(MARK)
    memo = p.str(s).put()
    for _ in range(2999):
        p.get(memo)
    p.op(APPENDS, SETITEM)
    return payload(p.stop()), 0


def case_memo_string_dict_keys():
    """A root dict of 200,000 SETITEMs all keyed by the same memoized 1 MiB str (values
    small ints). Python keeps one entry (the last value)."""
    p = Pickle().op(EMPTY_DICT)
    p.put()
    memo = p.str("k" * MiB).put()
    p.int(0).op(SETITEM)
    for i in range(1, 200_000):
        p.get(memo).int(i % 256).op(SETITEM)
    return payload(p.stop()), 0


def case_empty_lists():
    """{'x': [[]] * 8Mi distinct empty lists}: MARK, ']' x 8Mi, LIST. 8 MiB of pickle that
    Python needs about 1 GB to load."""
    p = Pickle().op(EMPTY_DICT).str("x").op(MARK)
    p.out += EMPTY_LIST * (8 * MiB)
    p.op(LIST, SETITEM)
    return payload(p.stop()), 0


def case_shared_dag_meta():
    """{'x': t40} with t0 a tensor (one storage of 4 floats) and t(i+1) = (t(i), t(i)), the
    second element a BINGET of the first: 40 levels, a DAG of 41 nodes that expands to a
    tree of 2^40 leaves."""
    p = Pickle().op(EMPTY_DICT)
    p.put()
    p.str("x")
    p.tensor("0", 4, 0, [4], [1])
    memo = p.put()
    for _ in range(40):  # t(i) is on the stack: push it again by reference, pair them
        p.get(memo).op(TUPLE2)
        memo = p.put()
    p.op(SETITEM)
    return payload(p.stop(), [("0", floats(1, 2, 3, 4))]), 16


def case_zero_stride_view():
    """{'x': a float32 view of sizes [2^31], stride [0] over a 1-element storage}: 8 GiB
    of elements that are all the same 4 bytes."""
    p = Pickle().op(EMPTY_DICT).str("x").tensor("0", 1, 0, [2**31], [0]).op(SETITEM)
    return payload(p.stop(), [("0", floats(1.5))]), 4


def case_huge_numel_view():
    """{'x': sizes [2^32, 2^32], strides [0, 0] over 1 element}: 2^64 elements, which
    overflows every 64-bit element count (numel * 4 wraps)."""
    p = Pickle().op(EMPTY_DICT).str("x").tensor("0", 1, 0, [2**32, 2**32], [0, 0]).op(SETITEM)
    return payload(p.stop(), [("0", floats(1.5))]), 4


def case_overlapping_records():
    """200 tensors t0..t199 on storages 0..199 of 1 MiB each; the archive holds ONE 1 MiB
    record, and the central directory's 200 entries data/0..data/199 all point at its
    local header: 200 MiB of tensors from a 1 MiB file."""
    numel = MiB // 4
    p = Pickle().op(EMPTY_DICT)
    p.put()
    p.op(MARK)
    for i in range(200):
        p.str(f"t{i}").tensor(str(i), numel, 0, [numel], [1])
    p.op(SETITEMS)
    pickle = p.stop()
    data = bytes(range(256)) * (MiB // 256)
    out = bytearray()
    central = bytearray()
    for name, record in (("data.pkl", pickle), ("version", b"3\n")):
        offset = len(out)
        out += local_header(f"archive/{name}", len(record), crc32(record), offset)
        out += record
        central += central_entry(f"archive/{name}", crc32(record), len(record), len(record), offset)
    shared = len(out)
    out += local_header("archive/data/0", len(data), crc32(data), shared)
    out += data
    for i in range(200):
        central += central_entry(f"archive/data/{i}", crc32(data), len(data), len(data), shared)
    cd_offset = len(out)
    out += central
    out += end_record(202, len(central), cd_offset)
    return bytes(out), len(data)


def case_sparse_central_directory(path):
    """A 3 GiB sparse file: a local header signature at 0, zeros, and an end-of-central-
    directory record at the end whose central directory is the ~3 GiB of zeros before
    it. Only a few KiB are on disk."""
    size = 3 << 30
    cd_offset = 4096
    eocd_offset = size - 22
    with open(path, "wb") as f:
        f.write(local_header("archive/data.pkl", 0, 0, 0))
        f.truncate(size)
        f.seek(eocd_offset)
        f.write(end_record(1, eocd_offset - cd_offset, cd_offset))
    return None, 0


def case_zip64_extra_short():
    """A central directory entry for data/0 whose sizes read 0xffffffff and whose ZIP64
    extra field (id 1) declares length 0, followed by other (empty) extra fields. A
    reader that takes the 64-bit sizes from past the field's end reads those fields'
    headers as the sizes, crafted to read 16 (the record's real size), so only the
    length check can catch it. Python's zipfile refuses it ("Corrupt extra field")."""
    pickle = Pickle().op(EMPTY_DICT).str("x").tensor("0", 4, 0, [4], [1]).op(SETITEM).stop()
    data = floats(1, 2, 3, 4)
    out = bytearray()
    central = bytearray()
    for name, record in (("data.pkl", pickle), ("data/0", data), ("version", b"3\n")):
        offset = len(out)
        out += local_header(f"archive/{name}", len(record), crc32(record), offset)
        out += record
        if name == "data/0":
            extra = struct.pack("<HH", 0x0001, 0)  # ZIP64 field with no room for its sizes
            extra += struct.pack("<HHHHHHHH", 16, 0, 0, 0, 16, 0, 0, 0)  # 4 empty fields
            central += central_entry(f"archive/{name}", crc32(record), 0xFFFFFFFF, 0xFFFFFFFF, offset, extra)
        else:
            central += central_entry(f"archive/{name}", crc32(record), len(record), len(record), offset)
    cd_offset = len(out)
    out += central
    out += end_record(3, len(central), cd_offset)
    return bytes(out), len(data)


def case_zero_dim_offset():
    """{'x': sizes [0, 3], strides [3, 1], storage_offset 2^40 over a 4-element storage}:
    an empty view that starts far beyond its storage."""
    p = Pickle().op(EMPTY_DICT).str("x").tensor("0", 4, 2**40, [0, 3], [3, 1]).op(SETITEM)
    return payload(p.stop(), [("0", floats(1, 2, 3, 4))]), 16


def case_zero_dim_overflow():
    """{'x': sizes [0, 2^40, 2^40], strides [1, 2^40, 2^40]}: empty, but the extent of
    its other dimensions, 2 * (2^40 - 1) * 2^40, overflows 64 bits."""
    p = Pickle().op(EMPTY_DICT).str("x").tensor("0", 4, 0, [0, 2**40, 2**40], [1, 2**40, 2**40]).op(SETITEM)
    return payload(p.stop(), [("0", floats(1, 2, 3, 4))]), 16


def case_control_chars():
    """Keys and values that would drive a terminal: an OSC title sequence ending in BEL,
    a clear-screen CSI, a carriage return in a value, and a key that is not UTF-8 (a
    BINUNICODE holding 0xff 0xfe)."""
    p = Pickle().op(EMPTY_DICT)
    p.put()
    p.op(MARK)
    p.str("\x1b]0;pwned\x07").int(1)
    p.str("\x1b[2J").int(2)
    p.str("note").str("all good\rEVIL")
    p.utf8(b"\xff\xfe").int(3)
    p.str("w").tensor("0", 4, 0, [4], [1])
    p.op(SETITEMS)
    return payload(p.stop(), [("0", floats(1, 2, 3, 4))]), 16


def case_legacy_big(path):
    """A legacy (pre-1.6) torch.save stream: the magic number, protocol 1001, sys_info,
    the root {'w': tensor, 'step': 5}, the storage key list, then storage '0' as its
    8-byte element count and 64 MiB of float32."""
    numel = 16 * MiB
    magic = Pickle().int(0x1950A86A20F9469CFC6C).stop()
    protocol = Pickle().int(1001).stop()
    info = Pickle().op(EMPTY_DICT).op(MARK)
    info.str("protocol_version").int(1001).str("little_endian").bool(True)
    info.str("type_sizes").op(EMPTY_DICT, MARK).str("short").int(2).str("int").int(4).str("long").int(4).op(SETITEMS)
    info.op(SETITEMS)
    root = Pickle().op(EMPTY_DICT).op(MARK)
    root.str("w").tensor("0", numel, 0, [numel // 1024, 1024], [1024, 1], legacy=True)
    root.str("step").int(5)
    root.op(SETITEMS)
    keys = Pickle().op(EMPTY_LIST).str("0").op(b"a").stop()
    with open(path, "wb") as f:
        f.write(magic + protocol + info.stop() + root.stop() + keys)
        f.write(struct.pack("<q", numel))
        chunk = floats(*[float(i % 7) for i in range(1024)]) * 256  # 1 MiB
        for _ in range(64):
            f.write(chunk)
    return None, 4 * numel


# Legitimate files only torch writes faithfully. Each returns (object, save kwargs).


def legit_uint64(torch):
    return {"seed": 2**64 - 1, "other": 2**63}, {}


def legit_mixed_keys(torch):
    return {"m": {2: "int", "s": 1, (1, 2): "tuple", True: "bool", None: "none", 1.5: "float"}}, {}


def legit_float16_dtype(torch):
    return {"dtype": torch.float16, "w": torch.ones(2, dtype=torch.float16)}, {}


def legit_tensor_root(torch):
    return torch.arange(6, dtype=torch.float32).reshape(2, 3), {}


def legit_list_root(torch):
    return [1, "two", torch.ones(3)], {}


def legit_legacy_protocol4(torch):
    return {"w": torch.arange(8, dtype=torch.float32), "step": 3}, {"_use_new_zipfile_serialization": False, "pickle_protocol": 4}


def legit_sparse_coo(torch):
    indices = torch.tensor([[0, 1, 2], [2, 0, 1]])
    return {"s": torch.sparse_coo_tensor(indices, torch.tensor([1.0, 2.0, 3.0]), (3, 3))}, {}


def legit_meta_tensor(torch):
    return {"m": torch.empty(3, 4, device="meta"), "w": torch.ones(2)}, {}


CASES = {
    "baseline": case_baseline,
    "control": case_control,
    "memo_string_list": case_memo_string_list,
    "memo_string_dict_keys": case_memo_string_dict_keys,
    "empty_lists": case_empty_lists,
    "shared_dag_meta": case_shared_dag_meta,
    "zero_stride_view": case_zero_stride_view,
    "huge_numel_view": case_huge_numel_view,
    "overlapping_records": case_overlapping_records,
    "sparse_central_directory": case_sparse_central_directory,
    "zip64_extra_short": case_zip64_extra_short,
    "zero_dim_offset": case_zero_dim_offset,
    "zero_dim_overflow": case_zero_dim_overflow,
    "control_chars": case_control_chars,
    "legacy_big": case_legacy_big,
}
WRITES_ITSELF = {"sparse_central_directory", "legacy_big"}
TORCH_CASES = {
    "legit_uint64": legit_uint64,
    "legit_mixed_keys": legit_mixed_keys,
    "legit_float16_dtype": legit_float16_dtype,
    "legit_tensor_root": legit_tensor_root,
    "legit_list_root": legit_list_root,
    "legit_legacy_protocol4": legit_legacy_protocol4,
    "legit_sparse_coo": legit_sparse_coo,
    "legit_meta_tensor": legit_meta_tensor,
}


def storage_bytes(torch, obj):
    """The bytes of the distinct storages torch.save writes for obj."""
    seen = {}

    def visit(x):
        if isinstance(x, torch.Tensor):
            if x.is_sparse:
                visit(x._indices())
                visit(x._values())
            elif x.device.type != "meta":
                s = x.storage()
                seen[s.data_ptr()] = s.size() * s.element_size()
        elif isinstance(x, dict):
            for v in x.values():
                visit(v)
        elif isinstance(x, (list, tuple)):
            for v in x:
                visit(v)

    visit(obj)
    return sum(seen.values())


def main(argv):
    if not argv or argv[0].startswith("-"):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    out_dir = argv[0]
    only = set()
    rest = argv[1:]
    while rest:
        if rest[0] == "--only" and len(rest) > 1:
            only.add(rest[1])
            rest = rest[2:]
        else:
            print(f"make_hostile.py: unknown argument {rest[0]}", file=sys.stderr)
            return 2
    os.makedirs(out_dir, exist_ok=True)
    manifest = {}

    def record(name, path, tensor_bytes, skipped=None):
        manifest[name] = {"file": path, "file_bytes": os.path.getsize(path) if path else 0, "tensor_bytes": tensor_bytes,
                          "skipped": skipped}
        if skipped:
            print(f"skipped {name}: {skipped}")
        else:
            st = os.stat(path)
            print(f"wrote {name}: {st.st_size} bytes ({st.st_blocks * 512} on disk)")

    for name, make in CASES.items():
        if only and name not in only and name != "baseline":
            continue
        path = os.path.join(out_dir, name + ".pth")
        if name in WRITES_ITSELF:
            _, tensor_bytes = make(path)
        else:
            data, tensor_bytes = make()
            with open(path, "wb") as f:
                f.write(data)
        record(name, path, tensor_bytes)

    wanted = [name for name in TORCH_CASES if not only or name in only]
    if wanted:
        try:
            import torch
        except Exception as error:  # not installed, or broken: the legit cases need it
            torch = None
            reason = f"needs torch to write the file (import torch failed: {error.__class__.__name__}: {error})"
        for name in wanted:
            if torch is None:
                record(name, None, 0, reason)
                continue
            obj, kwargs = TORCH_CASES[name](torch)
            path = os.path.join(out_dir, name + ".pth")
            torch.save(obj, path, **kwargs)
            record(name, path, storage_bytes(torch, obj))

    with open(os.path.join(out_dir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
