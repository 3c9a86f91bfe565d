#!/usr/bin/python3
"""Writes the seed corpus of the read_layout fuzzer (tests/fuzz/corpus/).

    /usr/bin/python3 tests/fuzz/make_seeds.py tests/fuzz/corpus

Two kinds of seeds:
  py_*       valid payloads written by torch.save (torch 1.13): zip and legacy layouts,
             several dtypes, views, OrderedDict state_dicts, nn.Parameter, optimizer
             state, pickle protocols 2 and 4; and (py_*_dec_*, for the decoder and the
             inspector targets) meta and sparse COO tensors, torch.dtype values, a bare
             storage, non-dict roots, non-str dict keys.
  hostile_*  hand-made payloads that must be refused with a FormatError: unsafe names,
             compressed or duplicate records, absurd central directories and ZIP64
             records, disallowed globals, NEWOBJ, bad memo references, overflowing sizes,
             views beyond their storage, integers beyond 64 bits, cycles, deep nesting.
The names are only for people: the fuzzer adds files named by their SHA-1.
Needs torch only for the py_* seeds; the hostile ones are built byte by byte.
"""

import collections
import io
import os
import struct
import sys
import zipfile
import zlib

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus")
os.makedirs(OUT, exist_ok=True)


def write(name, data):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)


# --------------------------------------------------------------------------- torch seeds

def torch_seeds():
    import torch

    def save(name, obj, **kwargs):
        buffer = io.BytesIO()
        torch.save(obj, buffer, **kwargs)
        write(name, buffer.getvalue())

    torch.manual_seed(0)
    small = {"a": torch.arange(4, dtype=torch.float32), "epoch": 3, "name": "run"}
    dtypes = {
        str(dtype).replace("torch.", ""): torch.arange(3).to(dtype)
        for dtype in (torch.float16, torch.bfloat16, torch.float64, torch.int8, torch.uint8,
                      torch.int16, torch.int32, torch.int64, torch.bool, torch.complex64)
    }
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    views = {"base": base, "t": base.t(), "row": base[1], "cols": base[:, 1:3],
             "scalar": torch.tensor(7.0), "empty": torch.zeros(0, 3)}
    linear = torch.nn.Linear(2, 2)
    module_state = linear.state_dict()  # OrderedDict with _metadata
    parameter = {"p": torch.nn.Parameter(torch.ones(2)), "frozen": torch.nn.Parameter(torch.ones(1), requires_grad=False)}
    optimizer = torch.optim.SGD(linear.parameters(), lr=0.1, momentum=0.9)
    linear(torch.ones(1, 2)).sum().backward()
    optimizer.step()
    optim_state = optimizer.state_dict()  # int keys, nested dicts, lists
    mixed = {"list": [1, 2.5, None, True, (1, 2)], "nested": {"x": {"y": [torch.zeros(1)]}},
             "bytes": b"\x00\xff", "big": 2**40, "neg": -5, "size": torch.Size([2, 3]),
             "ordered": collections.OrderedDict([("k", 1)]), "shared": [base, base]}

    for name, obj in [("small", small), ("dtypes", dtypes), ("views", views), ("module", module_state),
                      ("parameter", parameter), ("optimizer", optim_state), ("mixed", mixed)]:
        save(f"py_zip_{name}.pt", obj)
        save(f"py_legacy_{name}.pt", obj, _use_new_zipfile_serialization=False)
    save("py_zip_small_protocol4.pt", small, pickle_protocol=4)
    save("py_zip_mixed_protocol4.pt", mixed, pickle_protocol=4)
    # The legacy reader accepts only the protocol-2 magic number torch writes by default.
    save("unsupported_legacy_protocol4.pt", small, pickle_protocol=4, _use_new_zipfile_serialization=False)
    save("py_zip_tensor_root.pt", torch.ones(2))

    # A realistic training state: conv/batchnorm/linear/LSTM weights, Adam state after a
    # step, a scheduler, a config dict referenced twice (memo sharing), tied weights.
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(4 * 6 * 6, 5), torch.nn.LSTM(5, 3))
    adam = torch.optim.Adam(model.parameters(), lr=1e-3)
    model[:5](torch.randn(2, 3, 8, 8)).sum().backward()
    adam.step()
    scheduler = torch.optim.lr_scheduler.StepLR(adam, 3)
    shared = {"a": [1, 2, (3, 4)], "b": "x"}
    config = {"shared1": shared, "shared2": shared, "tuple": ([1, 2], [3]), "list": [(1, "a"), (2, "b")],
              "nested": [[[[]]]], "empty": {}, "ordered": collections.OrderedDict(a=1)}
    realistic = {"model": model.state_dict(), "optimizer": adam.state_dict(), "scheduler": scheduler.state_dict(),
                 "config": config, "rng": torch.get_rng_state(), "tied": [model[4].weight, model[4].weight]}
    save("py_zip_realistic.pt", realistic)
    save("py_legacy_realistic.pt", realistic, _use_new_zipfile_serialization=False)
    decoder_seeds(save)


def decoder_seeds(save):
    """What the reader accepts beyond plain dicts of dense tensors: seeds for fuzz_decode
    and fuzz_inspect (the reader reads them; the decoder and the inspector convert them)."""
    import torch

    sparse = torch.sparse_coo_tensor([[0, 1, 1], [2, 0, 2]], [3.0, 4.0, 5.0], (2, 3))
    seeds = {
        "meta": {"m": torch.empty(2, 3, device="meta"), "h": torch.empty(4, dtype=torch.float16, device="meta"),
                 "w": torch.ones(2)},
        "sparse": {"s": sparse, "i": torch.sparse_coo_tensor(torch.zeros(1, 0, dtype=torch.long), torch.zeros(0), (4,)),
                   "dense": torch.arange(3)},
        "dtypes_values": {"dt": torch.float16, "all": [torch.float32, torch.int8, torch.bool, torch.complex64],
                          "w": torch.zeros(1, dtype=torch.bfloat16)},
        "keys": {1: "one", 2.5: "float", True: "bool", None: "none", (1, 2): "tuple", "s": torch.ones(1)},
        "list_root": [torch.arange(2), 1, "x", [2.5, None], {"k": torch.zeros(2, 2).t()}],
    }
    for name, obj in seeds.items():
        save(f"py_zip_dec_{name}.pt", obj)
    save("py_legacy_dec_sparse.pt", seeds["sparse"], _use_new_zipfile_serialization=False)
    save("py_legacy_dec_keys.pt", seeds["keys"], _use_new_zipfile_serialization=False)
    save("py_zip_dec_storage_root.pt", torch.arange(5, dtype=torch.int16).storage())
    save("py_zip_dec_tensor_list_root.pt", [torch.ones(2, 2), torch.ones(2, 2)[0]])


# --------------------------------------------------------------------------- hostile seeds

def pickle_bytes(body):
    """A protocol-2 pickle: PROTO 2, body, STOP."""
    return b"\x80\x02" + body + b"."


def unicode(text):
    data = text.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def glob(module, name):
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def storage_pid(cls, key, numel):
    return (b"(" + unicode("storage") + glob("torch", cls) + unicode(key) + unicode("cpu") + numel + b"tQ")


def tensor(cls, key, numel, offset, sizes, strides):
    return (glob("torch._utils", "_rebuild_tensor_v2") + b"(" + storage_pid(cls, key, numel) + offset +
            sizes + strides + b"\x89" + glob("collections", "OrderedDict") + b")R" + b"tR")


def int1(v):
    return b"K" + bytes([v])


def zip_archive(records, root="archive"):
    """A stored zip archive the way torch writes it (names under `root`), CRCs correct."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in records:
            info = zipfile.ZipInfo(f"{root}/{name}" if root else name)
            archive.writestr(info, data)
    return buffer.getvalue()


def payload(pkl, storages=(), extra=()):
    return zip_archive([("data.pkl", pkl)] + list(storages) + [("version", b"3\n")] + list(extra))


LEGACY_MAGIC = bytes([0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e])


def legacy(root_body, keys=(), data=b""):
    protocol = pickle_bytes(b"M\xe9\x03")  # 1001
    sys_info = pickle_bytes(b"}(" + unicode("little_endian") + b"\x88u")
    key_list = pickle_bytes(b"](" + b"".join(unicode(k) for k in keys) + b"e")
    return LEGACY_MAGIC + protocol + sys_info + pickle_bytes(root_body) + key_list + data


def hostile_seeds():
    good_tensor = tensor("FloatStorage", "0", int1(4), int1(0), b"K\x04\x85", b"K\x01\x85")
    good = pickle_bytes(b"}(" + unicode("t") + good_tensor + b"u")
    storage = ("data/0", b"\0" * 16)
    write("valid_minimal.pt", payload(good, [storage]))

    # Names.
    write("hostile_dotdot.pt", zip_archive([("data.pkl", good), ("../evil", b"x"), ("data/0", b"\0" * 16)]))
    write("hostile_absolute.pt", zip_archive([("/etc/passwd", b"x")], root=""))
    write("hostile_backslash.pt", zip_archive([("data.pkl", good), ("data\\0", b"\0" * 16)]))
    write("hostile_two_roots.pt", _two_roots(good))
    write("hostile_duplicate.pt", zip_archive([("data.pkl", good), ("data/0", b"\0" * 16), ("data/0", b"\0" * 16),
                                                ("version", b"3\n")]))
    # Compressed record.
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/data.pkl", good)
        archive.writestr("archive/data/0", b"\0" * 16)
        archive.writestr("archive/version", b"3\n")
    write("hostile_deflate.pt", buffer.getvalue())

    valid = payload(good, [storage])
    eocd = valid.rfind(b"PK\x05\x06")
    # The end record claims 0xFFFF entries (ZIP64 without a locator), or more than fit.
    write("hostile_eocd_ffff.pt", valid[:eocd + 8] + b"\xff\xff\xff\xff" + valid[eocd + 12:])
    write("hostile_eocd_many.pt", valid[:eocd + 8] + b"\xf0\x00\xf0\x00" + valid[eocd + 12:])
    write("hostile_eocd_cd_size.pt", valid[:eocd + 12] + b"\xf0\xff\xff\x7f" + valid[eocd + 16:])
    write("hostile_eocd_cd_offset.pt", valid[:eocd + 16] + b"\xf0\xff\xff\x7f" + valid[eocd + 20:])
    # A central directory entry claims a size far beyond the file, or its local header
    # lies beyond the file.
    cd = valid.find(b"PK\x01\x02")
    write("hostile_cd_size.pt", valid[:cd + 20] + b"\xff\xff\xff\x7f\xff\xff\xff\x7f" + valid[cd + 28:])
    write("hostile_cd_offset.pt", valid[:cd + 42] + b"\xff\xff\xff\x7f" + valid[cd + 46:])
    # ZIP64: an end record whose counts, sizes and offsets are absurd.
    zip64_end = (b"PK\x06\x06" + struct.pack("<QHHIIQQQQ", 44, 45, 45, 0, 0, 2**62, 2**62, 2**63, 2**63 - 1))
    locator = b"PK\x06\x07" + struct.pack("<IQI", 0, eocd, 1)
    end = b"PK\x05\x06" + struct.pack("<HHHHIIH", 0, 0, 0xffff, 0xffff, 0xffffffff, 0xffffffff, 0)
    write("hostile_zip64_absurd.pt", valid[:eocd] + zip64_end + locator + end)
    locator_far = b"PK\x06\x07" + struct.pack("<IQI", 0, 2**63 + 5, 1)
    write("hostile_zip64_locator_far.pt", valid[:eocd] + locator_far + end)

    # Pickles.
    def bad(name, body):
        write(name, payload(pickle_bytes(body), [storage]))

    bad("hostile_global_os_system.pt", glob("os", "system") + b"(" + unicode("echo pwned") + b"tR")
    bad("hostile_global_eval.pt", glob("builtins", "eval") + b"(" + unicode("1") + b"tR")
    bad("hostile_global_getattr.pt", glob("__builtin__", "getattr") + b"(NNtR")
    bad("hostile_stack_global.pt", b"\x8c\x02os\x8c\x06system\x93")
    bad("hostile_newobj.pt", glob("collections", "OrderedDict") + b")\x81")
    bad("hostile_memo_before_put.pt", b"h\x05")
    bad("hostile_long_beyond_64.pt", b"\x8a\x09" + b"\x01" * 9)
    bad("hostile_numel_overflow.pt", b"}(" + unicode("t") +
        tensor("FloatStorage", "0", b"\x8a\x08" + struct.pack("<q", 2**62), int1(0), b"K\x04\x85", b"K\x01\x85") + b"u")
    bad("hostile_view_beyond.pt", b"}(" + unicode("t") +
        tensor("FloatStorage", "0", int1(4), int1(0), b"K\x03K\x03\x86", b"K\x03K\x01\x86") + b"u")
    bad("hostile_view_huge_stride.pt", b"}(" + unicode("t") +
        tensor("FloatStorage", "0", int1(4), int1(0), b"K\x02\x85", b"\x8a\x08" + struct.pack("<q", 2**62) + b"\x85") + b"u")
    bad("hostile_cycle.pt", b"]q\x00h\x00a")
    bad("hostile_deep_lists.pt", b"]" * 300 + b"a" * 299)
    bad("hostile_deep_marks.pt", b"(" * 300 + b"t" * 300)
    bad("hostile_unknown_opcode.pt", b"\xff")
    bad("hostile_stack_underflow.pt", b"a")
    # FRAME's length is only a hint: the pickle after it loads.
    bad("odd_frame_huge.pt", b"\x95" + struct.pack("<Q", 2**63) + b"N")
    bad("hostile_binunicode8_huge.pt", b"\x8d" + struct.pack("<Q", 2**63) + b"abc")
    # A pickle-level storage that is never stored, or stored with the wrong size.
    write("hostile_missing_storage.pt", payload(good))
    write("hostile_wrong_storage_size.pt", payload(good, [("data/0", b"\0" * 15)]))
    write("hostile_no_pickle.pt", zip_archive([("version", b"3\n")]))
    write("hostile_bad_version.pt", zip_archive([("data.pkl", good), ("data/0", b"\0" * 16), ("version", b"99999999999999999999\n")]))
    write("hostile_big_endian.pt", payload(good, [storage], [("byteorder", b"big")]))

    # Memo bombs: a 2-byte memo reference names a large tuple or string again and again.
    # "bounded_" ones copy less than the payload's memory budget allows (32 x data.pkl +
    # 16 MiB): they may load; the unit tests scale them past it.
    ones = b"(" + b"K\x01" * 2000 + b"tq\x01"
    pid = b"(" + unicode("storage") + glob("torch", "FloatStorage") + unicode("0") + unicode("cpu") + b"K\x04tq\x02"
    rebuild = glob("torch._utils", "_rebuild_tensor") + b"q\x00"
    bad("bounded_memo_shape.pt", ones + b"0" + pid + b"0" + rebuild + b"0](" + b"h\x00(h\x02QK\x00h\x01h\x01tR" * 300 + b"e")
    bad("hostile_memo_size.pt", ones + b"0" + glob("torch", "Size") + b"q\x030(h\x01\x85q\x040](" + b"h\x03h\x04R" * 300 + b"e")
    bad("bounded_memo_codecs.pt", glob("_codecs", "encode") + b"q\x050(" + unicode("a" * 4000) + unicode("latin1") +
        b"tq\x060](" + b"h\x05h\x06R" * 300 + b"e")
    bad("hostile_memo_location.pt", unicode("x" * 4000) + b"q\x070" + unicode("storage") + b"q\x080" +
        glob("torch", "FloatStorage") + b"q\x090](" +
        b"".join(b"(h\x08h\x09" + unicode(str(i)) + b"h\x07K\x00tQ" for i in range(300)) + b"e")
    # A DAG: 64 levels, each a list holding the level below twice. read_layout keeps the
    # sharing (a few hundred values), but a consumer that expands it visits 2^64 nodes.
    dag = b"]q\x000" + b"".join(b"](h" + bytes([i]) + b"h" + bytes([i]) + b"eq" + bytes([i + 1]) + b"0" for i in range(64))
    write("consumer_dag_bomb.pt", payload(pickle_bytes(dag + b"}(" + unicode("dag") + b"h" + bytes([64]) + b"u")))

    # A zero-stride view of 2^62 elements over a 1-element storage: inside its storage, so
    # read_layout accepts it (torch does too); a consumer that iterates or copies its
    # elements must bound the work by the element count.
    write("consumer_zero_stride_huge.pt", payload(pickle_bytes(b"}(" + unicode("t") + tensor(
        "FloatStorage", "0", int1(1), int1(0), b"\x8a\x08" + struct.pack("<q", 2**62) + b"\x85", b"K\x00\x85") + b"u"),
        [("data/0", b"\0" * 4)]))

    # Legacy stream.
    legacy_tensor = (glob("torch._utils", "_rebuild_tensor") + b"(" + storage_pid("FloatStorage", "k", int1(2)) +
                     int1(0) + b"K\x02\x85K\x01\x85tR")
    write("valid_legacy_minimal.pt", legacy(b"}(" + unicode("t") + legacy_tensor + b"u", ["k"],
                                            struct.pack("<Q", 2) + b"\0" * 8))
    write("hostile_legacy_numel_mismatch.pt", legacy(b"}(" + unicode("t") + legacy_tensor + b"u", ["k"],
                                                     struct.pack("<Q", 3) + b"\0" * 8))
    write("hostile_legacy_truncated.pt", legacy(b"}(" + unicode("t") + legacy_tensor + b"u", ["k"],
                                                struct.pack("<Q", 2) + b"\0" * 5))
    write("hostile_legacy_unknown_key.pt", legacy(b"N", ["nope"], b""))
    write("hostile_legacy_duplicate_key.pt", legacy(b"}(" + unicode("t") + legacy_tensor + b"u", ["k", "k"],
                                                    (struct.pack("<Q", 2) + b"\0" * 8) * 2))


def _two_roots(good):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", good)
        archive.writestr("other/data/0", b"\0" * 16)
    return buffer.getvalue()


if __name__ == "__main__":
    if os.environ.get("CKPT_SEEDS_ONLY") == "decoder":  # only the decoder_seeds (kept apart)
        import torch  # noqa: F401

        def save_only(name, obj, **kwargs):
            buffer = io.BytesIO()
            torch.save(obj, buffer, **kwargs)
            write(name, buffer.getvalue())

        decoder_seeds(save_only)
        sys.exit(0)
    hostile_seeds()
    if os.environ.get("CKPT_SEEDS_NO_TORCH") != "1":
        torch_seeds()
    print(f"wrote seeds into {OUT}")
