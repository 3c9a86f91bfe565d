#!/usr/bin/python3
"""Hostile payloads: a hostile file costs bounded time and memory; a legitimate file is
not refused.

    run_hostile.py --probe PATH/ckpt_load_probe --cli PATH/ckpt [--only NAME]... [--keep DIR]

Generates every case file (make_hostile.py, beside this script) into a temporary folder
(under $CKPT_TEST_TMP when set), then runs each case's operations, each in a child
process of its own, and checks per operation:
  - the outcome: loaded, refused (with a message containing a given text), or either;
    plus properties of the output where a case names them (no terminal control bytes,
    parsable JSON, ...);
  - no crash: death by a signal, or an exit code the tool does not define, fails;
  - time: a child still running after HANG_GUARD_S is killed and fails ("hang");
  - memory: the child's own peak RSS (os.wait4's ru_maxrss) against the rule below.
Operations: load (ckpt_load_probe FILE), load-meta (... --device meta), show (ckpt show),
stats (ckpt show --stats), json (ckpt show --json; stdout must parse), diff (ckpt diff
FILE FILE, or FILE against the baseline file).

Cases listed in EXPECTED_TO_FAIL_TODAY report "xfail" when they fail and do not fail the
suite; one that passes reports "xpass" (a note: take it out of the list).
Exit status: 0 when nothing failed, 1 otherwise (the failures are listed at the end).
"""

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

MiB = 1 << 20

# ---- the rule ---------------------------------------------------------------------------
# peak RSS of a child <= baseline + RSS_PER_FILE_BYTE x file bytes + tensor bytes + RSS_SLACK
#   baseline      the same operation's peak on a tiny valid file, measured first (libtorch's
#                 or the CLI's own footprint);
#   file bytes    the input's bytes on disk (a sparse file's holes are not bytes it holds);
#                 for the metadata-only operations (show, json, load-meta), the file's bytes
#                 less its tensor bytes: they must not read the tensors, so only the
#                 structure may cost memory;
#   tensor bytes  the storage bytes the file really holds, which a full load (load, stats)
#                 may hold in memory; 0 for the metadata-only operations; diff counts both
#                 inputs' file and tensor bytes.
RSS_PER_FILE_BYTE = 32
RSS_SLACK = 64 * MiB
HANG_GUARD_S = 20
# Protection for the machine, not part of the rule: a child whose RSS passes its bound by
# KILL_MARGIN (or ABSOLUTE_KILL) is killed at once, and one that prints more than
# OUTPUT_GUARD bytes is killed too ("output flood": a few hostile bytes must not make the
# CLI print gigabytes).
KILL_MARGIN = 512 * MiB
ABSOLUTE_KILL = 6 << 30
OUTPUT_GUARD = 64 * MiB
POLL_S = 0.01
# --sanitized (an AddressSanitizer build): its shadow memory (1/8 of what is mapped),
# redzones (up to 2x small allocations) and 256 MiB quarantine are not the library's, so
# the bound (baseline included, itself measured under ASan) is multiplied by
# SANITIZED_MEMORY_FACTOR, and the per-case time limits (not the hang guard) by
# SANITIZED_TIME_FACTOR.
SANITIZED_MEMORY_FACTOR = 4
SANITIZED_TIME_FACTOR = 3

# Cases (or "case/operation") that fail on today's code; the engineers fixing them take
# their entries out. A failure here is reported "xfail"; a pass is reported "xpass".
# Entries are "case" (all its operations) or "case/operation".
EXPECTED_TO_FAIL_TODAY = [
    # Every case passes since issue 11's fixes (2026-12-01). A case that regresses fails
    # the suite; list it here only with a comment saying why and what fixes it.
]

# ---- the cases --------------------------------------------------------------------------


class Expect:
    """What one operation on one case must give.

    outcome  "loaded", "refused" or "either"
    refusal  when refused: the message must contain one of these (case-insensitive);
             empty: any message
    keys     load / load-meta: the number of top-level keys printed ("ok N")
    checks   [(what, fn(result) -> bool)]: properties of a loaded (or any) result
    max_s    a tighter time limit than HANG_GUARD_S
    """

    def __init__(self, outcome, refusal=(), keys=None, checks=(), max_s=None):
        self.outcome, self.refusal, self.keys, self.checks, self.max_s = outcome, tuple(refusal), keys, list(checks), max_s


def loaded(keys=None, checks=(), max_s=None):
    return Expect("loaded", keys=keys, checks=checks, max_s=max_s)


def refused(*texts, checks=()):
    return Expect("refused", refusal=texts, checks=checks)


def either(*texts, checks=(), max_s=None):
    return Expect("either", refusal=texts, checks=checks, max_s=max_s)


CONTROL_BYTES = re.compile(rb"[\x1b\x07\r]")


def no_control_bytes(r):
    return not CONTROL_BYTES.search(r.stdout) and not CONTROL_BYTES.search(r.stderr)


def entry_lines(r):
    """`ckpt show`'s table rows (the first line is the file's summary)."""
    return r.stdout.splitlines()[1:]


def x_size_is_true(r):
    """show's line for 'x' (2^64 elements, 2^66 bytes) must not claim a small size."""
    if r.outcome != "loaded":
        return True
    lines = [line for line in entry_lines(r) if line.startswith(b"x ")]
    return bool(lines) and all(re.search(rb"(TiB|PiB|EiB)", line) for line in lines)


def json_entry_count(n):
    def check(r):
        if r.outcome != "loaded":
            return True
        try:
            return len(json.loads(r.stdout)["entries"]) == n
        except (ValueError, KeyError, TypeError):
            return False
    return check


def contains(text):
    return lambda r: text.encode() in r.stdout


CASES = [
    # 14. The control: a normal small state dict. Everything loads.
    ("control", {
        "load": loaded(keys=9), "load-meta": loaded(keys=9), "show": loaded(), "stats": loaded(), "json": loaded(),
        "diff": loaded(checks=[("diff of a file with itself says no differences", contains("no differences"))]),
    }),
    # 1. 3,000 references to one memoized 1 MiB string: Python loads it.
    ("memo_string_list", {"load": loaded(keys=1), "show": either(), "stats": either()}),
    # 2. 200,000 SETITEMs keyed by one memoized 1 MiB string: one entry, as Python.
    ("memo_string_dict_keys", {
        "load": loaded(keys=1),
        "show": loaded(checks=[("one entry", lambda r: len(entry_lines(r)) == 1)]),
        "json": loaded(checks=[("one entry", json_entry_count(1))]),
    }),
    # 3. 8 Mi empty lists from 8 MiB: loaded or refused, within the rule either way.
    ("empty_lists", {
        "load": either("memory", "budget"),
        "show": either("memory", "budget", "entries"),
        "stats": either("memory", "budget", "entries"),
    }),
    # 4. A 40-level DAG of shared tuples (2^40 paths to one tensor).
    ("shared_dag_meta", {
        "load-meta": loaded(keys=1), "load": loaded(keys=1),
        "show": either("entries"), "stats": either("entries"), "diff": either("entries"),
    }),
    # 5. A [2^31] view of stride 0 over one element.
    ("zero_stride_view", {
        "load-meta": loaded(keys=1), "load": loaded(keys=1), "show": loaded(),
        "stats": either(max_s=5), "diff": either(max_s=5),
    }),
    # 6. A [2^32, 2^32] view of strides 0: 2^64 elements.
    ("huge_numel_view", {
        "load": refused(), "load-meta": refused(),
        "show": either(checks=[("does not claim a small size for 'x'", x_size_is_true)]),
        "stats": either(),
    }),
    # 7. 200 central directory entries on one local header.
    ("overlapping_records", {"load": refused("overlap"), "show": refused("overlap"), "stats": refused("overlap")}),
    # 8. A 3 GiB sparse file whose central directory is its ~3 GiB of zeros.
    ("sparse_central_directory", {"show": refused(), "load": refused(), "stats": refused()}),
    # 9. A ZIP64 extra field too short for the sizes it must replace.
    ("zip64_extra_short", {"load": refused(), "show": refused(), "stats": refused()}),
    # 10. Empty views beyond their storage: bounds-checked like the others (format.md).
    ("zero_dim_offset", {"load": refused(), "load-meta": refused(), "show": refused(), "stats": refused()}),
    ("zero_dim_overflow", {"load": refused(), "load-meta": refused(), "show": refused(), "stats": refused()}),
    # 11. Keys and values that would drive a terminal, and a key that is not UTF-8.
    ("control_chars", {
        "load": either(),
        "show": loaded(checks=[("no ESC, BEL or CR in the output", no_control_bytes)]),
        "stats": loaded(checks=[("no ESC, BEL or CR in the output", no_control_bytes)]),
        "json": loaded(),
    }),
    # 12. A legacy stream with one 64 MiB storage: show must not read it.
    ("legacy_big", {"show": loaded(), "load": loaded(keys=2), "stats": loaded()}),
    # 13. Legitimate files torch writes (skipped without torch): never refused.
    ("legit_uint64", {
        "load": loaded(keys=2),
        "show": loaded(checks=[("shows 2**64-1 as 18446744073709551615", contains("18446744073709551615"))]),
    }),
    ("legit_mixed_keys", {"load": loaded(keys=1), "show": loaded()}),
    ("legit_float16_dtype", {"load": loaded(keys=2), "show": loaded()}),
    ("legit_tensor_root", {"load": refused("dict"), "show": loaded()}),
    ("legit_list_root", {"load": refused("dict"), "show": loaded()}),
    ("legit_legacy_protocol4", {"load": loaded(keys=2), "show": loaded()}),
    ("legit_sparse_coo", {"load": loaded(keys=1), "show": loaded()}),
    ("legit_meta_tensor", {"load": loaded(keys=2), "load-meta": loaded(keys=2), "show": loaded()}),
]

METADATA_ONLY = {"show", "json", "load-meta"}
TENSOR_FACTOR = {"load": 1, "load-meta": 0, "show": 0, "json": 0, "stats": 1, "diff": 1}

# ---- running a child --------------------------------------------------------------------


class Result:
    def __init__(self):
        self.outcome = None   # loaded, refused, crash, hang, memory, output-flood, usage
        self.message = ""     # the refusal, or what went wrong
        self.stdout = b""
        self.stderr = b""
        self.peak = 0         # bytes
        self.seconds = 0.0


def vm_rss(pid):
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def spawn(request):
    """In the spawner process: runs one child and reports its exit status, its own peak
    RSS (ru_maxrss) and wall time. Kills it past HANG_GUARD_S, past kill_at bytes of RSS,
    or past OUTPUT_GUARD bytes of output."""
    with open(request["stdout"], "wb") as out, open(request["stderr"], "wb") as err:
        start = time.monotonic()
        child = subprocess.Popen(request["argv"], stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        killed = None
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            elapsed = time.monotonic() - start
            if killed is None:
                if elapsed > request["hang_s"]:
                    killed = ["hang", f"still running after {request['hang_s']} s: killed"]
                elif vm_rss(child.pid) > request["kill_at"]:
                    killed = ["memory", f"RSS passed {request['kill_at'] / MiB:.0f} MiB: killed"]
                elif os.fstat(out.fileno()).st_size + os.fstat(err.fileno()).st_size > OUTPUT_GUARD:
                    killed = ["output-flood", f"printed more than {OUTPUT_GUARD // MiB} MiB: killed"]
                if killed:
                    os.kill(child.pid, signal.SIGKILL)
                    continue
            time.sleep(POLL_S)
        child.returncode = status  # reaped here, not by Popen
        return {"status": status, "peak": usage.ru_maxrss * 1024, "seconds": time.monotonic() - start, "killed": killed}


def spawner_main():
    """The spawner: a small process started before anything else, which starts every
    child. A child's ru_maxrss counts the memory of the process it was forked from (the
    kernel carries the parent's RSS high-water mark across fork and exec), so children
    are not forked from the runner, whose memory grows as it reads their output: the
    spawner's stays the same (and is part of every baseline)."""
    for line in sys.stdin:
        print(json.dumps(spawn(json.loads(line))), flush=True)


class Spawner:
    def __init__(self):
        self.process = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--spawner"], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)

    def run(self, request):
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the spawner process died")
        return json.loads(line)

    def close(self):
        self.process.stdin.close()
        self.process.wait()


SPAWNER = None


def run_child(argv, tool, kill_at, hang_s, work_dir):
    """Runs argv (through the spawner) and interprets its exit as the tool defines it."""
    r = Result()
    out_path, err_path = os.path.join(work_dir, "child.stdout"), os.path.join(work_dir, "child.stderr")
    reply = SPAWNER.run({"argv": argv, "stdout": out_path, "stderr": err_path, "kill_at": kill_at, "hang_s": hang_s})
    status, killed, r.peak, r.seconds = reply["status"], reply["killed"], reply["peak"], reply["seconds"]
    for path, name in ((out_path, "stdout"), (err_path, "stderr")):
        with open(path, "rb") as f:
            setattr(r, name, f.read(OUTPUT_GUARD + 1))
        os.unlink(path)
    if killed:
        r.outcome, r.message = killed
        return r
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        r.outcome, r.message = "crash", f"killed by {signal.Signals(sig).name}: {tail(r.stderr)}"
        return r
    code = os.WEXITSTATUS(status)
    if tool == "probe":
        text = r.stdout.decode("utf-8", "replace").strip()
        if code == 0 and text.startswith("ok "):
            r.outcome, r.message = "loaded", text
        elif code == 1 and text.startswith("refused: "):
            r.outcome, r.message = "refused", text[len("refused: "):]
        else:
            r.outcome, r.message = "crash", f"exit {code}: {tail(r.stdout)} {tail(r.stderr)}"
    else:  # the CLI: 0 ok, 1 "no" (diff: differences), 2 usage, 3 error (docs/cli.md)
        if code == 0 or (code == 1 and argv[1] == "diff"):
            r.outcome = "loaded"
        elif code == 3:
            r.outcome, r.message = "refused", r.stderr.decode("utf-8", "replace").strip()
        elif code == 2:
            r.outcome, r.message = "usage", tail(r.stderr)
        else:
            r.outcome, r.message = "crash", f"exit {code}: {tail(r.stderr)}"
    return r


def tail(data, n=300):
    text = data.decode("utf-8", "backslashreplace").strip()
    return text if len(text) <= n else "..." + text[-n:]


def command(op, file, args):
    if op == "load":
        return [args.probe, file], "probe"
    if op == "load-meta":
        return [args.probe, file, "--device", "meta"], "probe"
    if op == "show":
        return [args.cli, "show", file], "cli"
    if op == "stats":
        return [args.cli, "show", "--stats", file], "cli"
    if op == "json":
        return [args.cli, "show", "--json", file], "cli"
    if op == "diff":
        return [args.cli, "diff", file, file], "cli"
    raise ValueError(op)


def disk_bytes(path):
    st = os.stat(path)
    return min(st.st_size, st.st_blocks * 512)


def bound(op, baseline, inputs):
    """The rule above, for `op` over inputs [(file bytes, tensor bytes)]."""
    total = baseline + RSS_SLACK
    for file_bytes, tensor_bytes in inputs:
        if op in METADATA_ONLY:
            total += RSS_PER_FILE_BYTE * max(0, file_bytes - tensor_bytes)
        else:
            total += RSS_PER_FILE_BYTE * file_bytes + TENSOR_FACTOR[op] * tensor_bytes
    return total


def judge(expect, r, limit, time_factor):
    """The problems with result r (empty: it passed)."""
    problems = []
    if r.outcome not in ("loaded", "refused"):
        problems.append(f"{r.outcome}: {r.message}")
    elif expect.outcome != "either" and r.outcome != expect.outcome:
        problems.append(f"expected {expect.outcome}, got {r.outcome}" + (f": {r.message}" if r.message else ""))
    elif r.outcome == "refused" and expect.refusal and not any(t.lower() in r.message.lower() for t in expect.refusal):
        problems.append(f"refused without mentioning {' or '.join(repr(t) for t in expect.refusal)}: {r.message}")
    elif r.outcome == "loaded" and expect.keys is not None and r.message != f"ok {expect.keys}":
        problems.append(f"expected 'ok {expect.keys}', got '{r.message}'")
    if r.peak > limit:
        problems.append(f"peak {r.peak / MiB:.0f} MiB over the bound {limit / MiB:.0f} MiB")
    if expect.max_s is not None and r.seconds > expect.max_s * time_factor and r.outcome in ("loaded", "refused"):
        problems.append(f"took {r.seconds:.1f} s, more than {expect.max_s * time_factor} s")
    for what, check in expect.checks:
        if r.outcome in ("loaded", "refused") and not check(r):
            problems.append(f"check failed: {what}")
    return problems


def json_check(r):
    try:
        json.loads(r.stdout)
        return True
    except ValueError:
        return False


def main():
    if sys.argv[1:] == ["--spawner"]:
        spawner_main()
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--probe", required=True, help="the ckpt_load_probe executable")
    parser.add_argument("--cli", required=True, help="the ckpt executable")
    parser.add_argument("--only", action="append", default=[], metavar="NAME", help="run only this case (repeatable)")
    parser.add_argument("--keep", metavar="DIR", help="generate the files into DIR and keep them")
    parser.add_argument("--sanitized", action="store_true",
                        help="the binaries are an AddressSanitizer build: relax the memory and time limits")
    args = parser.parse_args()
    args.probe, args.cli = os.path.abspath(args.probe), os.path.abspath(args.cli)
    for path in (args.probe, args.cli):
        if not os.access(path, os.X_OK):
            print(f"run_hostile.py: {path} is not an executable", file=sys.stderr)
            return 2
    names = [name for name, _ in CASES]
    unknown = [n for n in args.only if n not in names]
    if unknown:
        print(f"run_hostile.py: unknown case {', '.join(unknown)} (cases: {', '.join(names)})", file=sys.stderr)
        return 2
    listed = {entry.split("/")[0] for entry in EXPECTED_TO_FAIL_TODAY}
    if listed - set(names):
        print(f"run_hostile.py: EXPECTED_TO_FAIL_TODAY names unknown cases {sorted(listed - set(names))}", file=sys.stderr)
        return 2

    suite_start = time.monotonic()
    parent = os.environ.get("CKPT_TEST_TMP") or None
    if parent:
        os.makedirs(parent, exist_ok=True)
    if args.keep:
        os.makedirs(args.keep, exist_ok=True)
        work = os.path.abspath(args.keep)
    else:
        work = tempfile.mkdtemp(prefix="hostile-", dir=parent)
    global SPAWNER
    SPAWNER = Spawner()
    try:
        return run(args, work, suite_start)
    finally:
        SPAWNER.close()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def run(args, work, suite_start):
    files = os.path.join(work, "files")
    generator = [sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "make_hostile.py"), files]
    for name in args.only:
        generator += ["--only", name]
    generated = subprocess.run(generator, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if generated.returncode != 0:
        print(f"make_hostile.py failed (exit {generated.returncode}):\n{generated.stdout}{generated.stderr}", file=sys.stderr)
        return 1
    for line in generated.stdout.splitlines():
        if line.startswith("skipped"):
            print(line)
    with open(os.path.join(files, "manifest.json")) as f:
        manifest = json.load(f)
    print(f"generated {len(manifest)} files in {time.monotonic() - suite_start:.1f} s")

    cases = [(name, ops) for name, ops in CASES if not args.only or name in args.only]
    base = manifest["baseline"]
    base_inputs = [(disk_bytes(base["file"]), base["tensor_bytes"])]
    baselines = {}
    time_factor = SANITIZED_TIME_FACTOR if args.sanitized else 1
    memory_factor = SANITIZED_MEMORY_FACTOR if args.sanitized else 1
    hang_s = HANG_GUARD_S
    if args.sanitized:
        print(f"sanitized build: memory bounds x{memory_factor}, time limits x{time_factor}")
    for op in sorted({op for _, ops in cases for op in ops}):
        argv, tool = command(op, base["file"], args)
        r = run_child(argv, tool, ABSOLUTE_KILL, hang_s, work)
        if r.outcome != "loaded":
            print(f"baseline: {op} on the tiny valid file did not load ({r.outcome}: {r.message})", file=sys.stderr)
            return 1
        baselines[op] = r.peak
    print("baselines (peak MiB): " + ", ".join(f"{op} {peak / MiB:.0f}" for op, peak in sorted(baselines.items())))

    header = f"{'case':<26} {'operation':<9} {'outcome':<12} {'peak MiB':>8} {'bound':>6} {'seconds':>7}  verdict"
    print(header)
    print("-" * len(header))
    failures, xfails, xpasses = [], [], []
    for name, ops in cases:
        info = manifest.get(name)
        if info is None:
            failures.append((name, "-", ["make_hostile.py wrote no file for it"]))
            print(f"{name:<26} {'-':<9} {'missing':<12} {'':>8} {'':>6} {'':>7}  FAIL")
            continue
        if info["skipped"]:
            print(f"{name:<26} {'-':<9} {'skipped':<12} {'':>8} {'':>6} {'':>7}  skip ({info['skipped']})")
            continue
        inputs = [(disk_bytes(info["file"]), info["tensor_bytes"])]
        for op, expect in ops.items():
            op_inputs = inputs * 2 if op == "diff" else inputs  # diff reads the file twice
            argv, tool = command(op, info["file"], args)
            limit = memory_factor * bound(op, baselines[op], op_inputs)
            kill_at = min(limit + KILL_MARGIN, ABSOLUTE_KILL)
            r = run_child(argv, tool, kill_at, hang_s, work)
            if op == "json":
                expect = Expect(expect.outcome, expect.refusal, expect.keys,
                                expect.checks + [("stdout parses as JSON", lambda r: r.outcome != "loaded" or json_check(r))],
                                expect.max_s)
            problems = judge(expect, r, limit, time_factor)
            listed = name in EXPECTED_TO_FAIL_TODAY or f"{name}/{op}" in EXPECTED_TO_FAIL_TODAY
            if problems and listed:
                verdict = "xfail"
                xfails.append((name, op, problems))
            elif problems:
                verdict = "FAIL"
                failures.append((name, op, problems))
            elif listed:
                verdict = "xpass"
                xpasses.append((name, op))
            else:
                verdict = "ok"
            print(f"{name:<26} {op:<9} {r.outcome:<12} {r.peak / MiB:>8.1f} {limit / MiB:>6.1f} {r.seconds:>7.2f}  {verdict}",
                  flush=True)
            if problems:
                for problem in problems:
                    print(f"{'':<26}   {short(problem)}")

    print(f"\n{len(failures)} failed, {len(xfails)} xfail, {len(xpasses)} xpass; "
          f"{time.monotonic() - suite_start:.1f} s in all")
    if xpasses:
        print("xpass (now passing: remove from EXPECTED_TO_FAIL_TODAY): " +
              ", ".join(f"{n}/{o}" for n, o in xpasses))
    if failures:
        print("FAILED:")
        for name, op, problems in failures:
            print(f"  {name} {op}: {short('; '.join(problems))}")
        return 1
    return 0


def short(text, n=400):
    """One printable line (a hostile file's text must not drive the terminal here either)."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text.replace("\n", " "))
    return text if len(text) <= n else text[:n] + "..."


if __name__ == "__main__":
    sys.exit(main())
