"""What torch.load(weights_only=True) does with files ckpt writes, per torch version.

    /usr/bin/python3 tests/python/check_weights_only.py <dir>

<dir> holds the files tests/torch/weights_only_test.cpp wrote with ckpt::save_file, one
per case below. Each is loaded with weights_only=True and checked against what this torch
version must do (docs/format.md, "Python's weights_only=True loader"):

  - tensors, ints, str, bool, None, nested dicts, lists and tuples load on every torch
    that has weights_only (1.13 and later), with their values;
  - a Python float is pickled as BINFLOAT, an opcode torch 1.13's restricted unpickler
    lacks: the load fails with "Unsupported operand 71" before BINFLOAT_SINCE, and loads
    from it on. The optimizer's state (lr, betas, eps are floats) is such a state;
  - a dtype global outside 1.13's short list (torch.bool, here for a meta tensor) fails
    on 1.13 with "Unsupported class torch.bool" (not asserted on torch 2.x).

Prints one line per case; exits 1 if any case does not do what this version must.
"""
import math
import os
import sys

import torch

# The first torch release whose weights-only unpickler reads BINFLOAT (1.13's has no
# such branch; PyTorch issue #94670 reported it against 1.13.1). If an upgraded torch
# disagrees, this constant and docs/format.md are what change.
BINFLOAT_SINCE = (2, 0)


def version():
    return tuple(int(part) for part in torch.__version__.split("+")[0].split(".")[:2])


def expect_values(case, loaded):
    """The values weights_only_test.cpp saved, or a list of differences."""
    problems = []

    def check(what, ok):
        if not ok:
            problems.append(f"{case}: {what} differs: {loaded!r:.300}")

    if case == "tensors_and_ints":
        check("epoch", loaded["epoch"] == 7 and type(loaded["epoch"]) is int)
        check("step", loaded["step"] == 2**40)
        check("neg", loaded["neg"] == -5)
        check("weights", torch.equal(loaded["weights"], torch.arange(12, dtype=torch.float32).reshape(3, 4) / 4))
        check("transposed", torch.equal(loaded["transposed"], loaded["weights"].t()))
        check("counts", torch.equal(loaded["counts"], torch.arange(5) * 3))
        check("flags", torch.equal(loaded["flags"], torch.tensor([True, False, True])))
        check("halfs", torch.equal(loaded["halfs"], torch.tensor([1.5, -2.0], dtype=torch.bfloat16)))
        check("model", sorted(loaded["model"]) == ["0.bias", "0.weight"] and
              torch.equal(loaded["model"]["0.weight"], torch.ones(2, 3)))
        check("sparse", loaded["sparse"].is_sparse and
              torch.equal(loaded["sparse"].to_dense(), torch.tensor([[0.0, 2.0], [3.0, 0.0]])))
        check("meta", loaded["meta"].is_meta and loaded["meta"].shape == (2, 3))
    elif case == "text_and_containers":
        check("name", loaded["name"] == "ckpt")
        check("finished", loaded["finished"] is True)
        check("nothing", loaded["nothing"] is None)
        check("ids", loaded["ids"] == [1, 2, 3])
        check("pair", loaded["pair"] == (1, "x"))
        check("cfg", loaded["cfg"] == {"depth": 3, "tags": ["a", "b"]})
    elif case == "float":
        check("best_acc", loaded["best_acc"] == 0.8125 and loaded["epoch"] == 7)
    elif case == "float_list":
        check("losses", loaded["losses"] == [0.5, 0.25, 0.125])
    elif case == "optimizer":
        group = loaded["optimizer"]["param_groups"][0]
        check("lr", math.isclose(group["lr"], 1e-3))
    return problems


# case -> what it holds that matters for weights_only
CASES = {
    "tensors_and_ints": "always",
    "text_and_containers": "always",
    "float": "float",
    "float_list": "float",
    "optimizer": "float",
    "meta_bool": "dtype_bool",
}


def main():
    directory = sys.argv[1]
    now = version()
    problems = []
    for case, kind in CASES.items():
        path = os.path.join(directory, case + ".pth")
        try:
            loaded = torch.load(path, weights_only=True)
            error = None
        except Exception as e:  # what weights_only raises: pickle.UnpicklingError
            loaded, error = None, f"{type(e).__name__}: {e}"
        if kind == "always" or (kind == "float" and now >= BINFLOAT_SINCE):
            if error:
                problems.append(f"{case}: torch {torch.__version__} must load it with weights_only=True: {error}")
            else:
                problems += expect_values(case, loaded)
        elif kind == "float":
            if not error or "Unsupported operand 71" not in error:
                problems.append(f"{case}: torch {torch.__version__} < {BINFLOAT_SINCE} must refuse BINFLOAT "
                                f"('Unsupported operand 71'), got {error or 'a successful load'}")
        elif kind == "dtype_bool" and now < (2, 0):
            if not error or "Unsupported class torch.bool" not in error:
                problems.append(f"{case}: torch {torch.__version__} must refuse torch.bool, got {error or 'a load'}")
        print(f"{case}: {'loaded' if error is None else 'refused: ' + error.split('WeightsUnpickler error: ')[-1]}")
    for problem in problems:
        print("MISMATCH " + problem)
    if problems:
        return 1
    print(f"ok: torch {torch.__version__}, weights_only=True as expected for every case")
    return 0


if __name__ == "__main__":
    sys.exit(main())
