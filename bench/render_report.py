"""render_report.py: the tables of docs/benchmarks.md, from the benchmarks' JSON results.

  render_report.py [--core DIR] [--format DIR] [--dedupe DIR] [--restore DIR] [--async DIR] --out docs/benchmarks.md

--core is bench/run_benchmarks.sh's results directory, --format bench/run_format_benchmarks.sh's,
--dedupe, --restore and --async the results of run_benchmarks.sh's parts of those names.
Each part's tables replace what stands between its markers in OUT,
<!-- tables: NAME --> and <!-- end of tables: NAME -->; everything outside them (the
command that reproduces the report, the hand-written analysis) is left as it is.

Only numbers: no prose is generated, and nothing here knows ckpt's source. Contenders are
named by the ids the run scripts give their result files. Statistics for both sides of a
comparison come from the same code, on the raw samples. Standard library only.
"""

import argparse
import glob
import json
import os
import re
import statistics
from collections import defaultdict

MIB = 1 << 20


# --- numbers ------------------------------------------------------------------------------

def load(path):
    with open(path) as f:
        return json.load(f)


def percentile(ordered, p):
    # Nearest rank, as bench/bench_support.hpp: every value shown was observed.
    if not ordered:
        return 0.0
    return ordered[min(max(-(-p * len(ordered) // 100), 1), len(ordered)) - 1]


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def us(value):
    return "-" if value is None else f"{value:,.1f} µs" if value < 10_000 else f"{value / 1000:,.2f} ms"


def secs(value):
    if value is None:
        return "-"
    if value >= 0.1:
        return f"{value:.3f} s"
    return f"{value * 1000:.1f} ms" if value >= 0.001 else f"{value * 1e6:.0f} µs"


def span(values):
    values = [v for v in values if v is not None]
    return f"{secs(min(values))} – {secs(max(values))}" if values else "-"


def times(value):
    return "-" if value is None else f"{value:.2f}x" if value >= 0.1 else f"{value * 100:.2f}%"


def mib(kib):
    return "-" if kib is None else f"{kib / 1024:,.0f} MiB"


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows] + [""]


def run_table(info):
    m = info.get("machine", {})
    rows = [("run", f"{info.get('started', '?')} to {info.get('finished', '?')}"), ("commit", info.get("commit", "?"))]
    rows += [(key.replace("_", " "), value) for key, value in m.items()]
    rows += [(key.replace("_", " "), value) for key, value in info.items()
             if key not in ("started", "finished", "commit", "machine")]
    return table(["", ""], rows)


# --- core: epoch save, fsyncs, index --------------------------------------------------------

def save_sides(results, rounds, sides, orders):
    # save-SIDE-ROUND.json of each side: samples pooled over the rounds, mean phases, each
    # round's means (with `orders`' word for odd and even rounds), and pooled statistics.
    pooled, phases, per_round = defaultdict(list), defaultdict(lambda: defaultdict(float)), []
    for r in rounds:
        means = {}
        for side in sides:
            result = load(os.path.join(results, f"save-{side}-{r}.json"))
            pooled[side] += result["samples_us"]
            means[side] = statistics.fmean(result["samples_us"])
            for phase, value in result["phases_us"].items():
                phases[phase][side] += value / len(rounds)
        per_round.append((r, orders[0] if r % 2 else orders[1], means))
    stats = {side: {"mean": statistics.fmean(s), "median": percentile(sorted(s), 50), "p95": percentile(sorted(s), 95)}
             for side, s in pooled.items()}
    return pooled, phases, per_round, stats


def core_tables(results):
    out = run_table(load(os.path.join(results, "run.json")))
    rounds = sorted(int(m.group(1)) for m in (re.fullmatch(r"save-cpp-(\d+)\.json", os.path.basename(p))
                                            for p in glob.glob(os.path.join(results, "save-cpp-*.json"))) if m)
    pooled, phases, per_round, stats = save_sides(results, rounds, ("cpp", "python"), ("C++ first", "Python first"))
    out += ["**Epoch save** (`save_bench`, `python_guide_save.py`): pooled samples of all rounds.", ""]
    out += table(["", "mean", "median", "p95", "samples"], [
        ("C++ ckpt", *(us(stats["cpp"][k]) for k in ("mean", "median", "p95")), len(pooled["cpp"])),
        ("Python guide, durable", *(us(stats["python"][k]) for k in ("mean", "median", "p95")), len(pooled["python"])),
        ("**C++ / Python**", *(f"**{stats['cpp'][k] / stats['python'][k]:.2f}x**" for k in ("mean", "median", "p95")), ""),
    ])
    out += table(["round", "order", "C++ mean", "Python mean", "C++ / Python"],
                 [(r, order, us(m["cpp"]), us(m["python"]), f"{m['cpp'] / m['python']:.2f}x") for r, order, m in per_round])
    out += ["Mean per save of each phase, over the rounds (phase names as each program reports them):", ""]
    out += table(["phase", "C++", "Python", "C++ − Python"],
                 [(f"`{name}`", us(v.get("cpp")), us(v.get("python")), f"{v.get('cpp', 0) - v.get('python', 0):+,.1f} µs")
                  for name, v in phases.items()] +
                 [("**total**", us(sum(v.get("cpp", 0) for v in phases.values())),
                   us(sum(v.get("python", 0) for v in phases.values())), "")])
    out += rules_tables(results, rounds)
    out += fsync_tables(results)
    out += index_tables(load(os.path.join(results, "index.json")))
    return out


def rules_tables(results, rounds):
    # save-cpp-rules-N.json: the C++ side again with retention rules, run next to save-cpp-N.
    if not rounds or not os.path.exists(os.path.join(results, f"save-cpp-rules-{rounds[0]}.json")):
        return []
    pooled, phases, per_round, stats = save_sides(results, rounds, ("cpp", "cpp-rules"), ("without first", "with first"))
    rules = load(os.path.join(results, f"save-cpp-rules-{rounds[0]}.json")).get("rules", "")
    out = [f"**Retention rules** (`save_bench --rules '{rules}'`, beside the newest 5): the same saves, pooled samples of all rounds.", ""]
    out += table(["", "mean", "median", "p95", "samples"], [
        ("newest 5", *(us(stats["cpp"][k]) for k in ("mean", "median", "p95")), len(pooled["cpp"])),
        ("newest 5 and the rules", *(us(stats["cpp-rules"][k]) for k in ("mean", "median", "p95")), len(pooled["cpp-rules"])),
        ("**with / without**", *(f"**{stats['cpp-rules'][k] / stats['cpp'][k]:.2f}x**" for k in ("mean", "median", "p95")), ""),
    ])
    out += table(["round", "order", "without", "with", "with / without"],
                 [(r, order, us(m["cpp"]), us(m["cpp-rules"]), f"{m['cpp-rules'] / m['cpp']:.2f}x") for r, order, m in per_round])
    out += table(["phase", "without", "with", "with − without"],
                 [(f"`{name}`", us(v.get("cpp")), us(v.get("cpp-rules")), f"{v.get('cpp-rules', 0) - v.get('cpp', 0):+,.1f} µs")
                  for name, v in phases.items()])
    return out


# `PID call(FD</path/to/file>` in `strace -f -y` output (the first half of a call another
# thread interrupted has the same start; its "resumed" half does not match).
STRACE_FD_CALL = re.compile(r"^\d+\s+(\w+)\(\d+<([^>]*)>")


def synced_files(log, run_dir):
    """Sync calls by (call, file), the file named by its path below the run's directory
    with digits as N (checkpoint_epoch_N.pth.tmp), or by the path itself."""
    calls = defaultdict(int)
    with open(log) as f:
        for line in f:
            match = STRACE_FD_CALL.match(line)
            if match:
                path = match.group(2)
                name = "(the directory)" if path == run_dir else re.sub(
                    r"\d+", "N", os.path.relpath(path, run_dir)) if path.startswith(run_dir + "/") else path
                calls[(match.group(1), name)] += 1
    return calls


def fsync_tables(results):
    out = ["**Sync calls per save**, counted with `strace -f -y`: (calls in a run of N saves − calls in a run "
           "of 0) / N.", ""]
    for side in ("cpp", "python"):
        paths = sorted(glob.glob(os.path.join(results, f"strace-{side}-*.log")),
                       key=lambda p: int(re.search(r"-(\d+)\.log$", p).group(1)))
        if len(paths) != 2:
            continue
        saves = int(re.search(r"-(\d+)\.log$", paths[1]).group(1))
        setup = synced_files(paths[0], load(paths[0][:-4] + ".json")["dir"])
        full = synced_files(paths[1], load(paths[1][:-4] + ".json")["dir"])
        rows = [(f"`{call}`", f"`{name}`", f"{(full[(call, name)] - setup[(call, name)]) / saves:.3f}",
                 full[(call, name)] - setup[(call, name)]) for call, name in sorted(set(full) | set(setup))
                if full[(call, name)] != setup[(call, name)]]
        total = sum(float(row[2]) for row in rows)
        out += [f"{'C++ ckpt' if side == 'cpp' else 'Python guide, durable'}: {total:.2f} per save.", ""]
        out += table(["call", "file", "per save", f"calls in {saves} saves"], rows)
    return out


def index_tables(index):
    fresh, large = index["phases"]
    out = [f"**Index** (`index_bench`): {large['rows']:,} checkpoint rows and {large['events']:,} events "
           f"({index['history_rows']:,} rows of history inserted in {index['history_insert_seconds']:.1f} s) "
           f"against a fresh directory of {fresh['rows']} rows; {index['iterations']:,} lookups each, "
           f"{len(large['open_us'])} opens, {len(large['save_us'])} saves; SQLite {index['sqlite']}.", ""]
    rows = []
    for key in ("latest_us", "best_us", "open_us", "save_us"):
        small, big = sorted(fresh[key]), sorted(large[key])
        rows.append((f"`{key[:-3]}`", us(statistics.fmean(small)), us(statistics.fmean(big)), us(percentile(big, 50)),
                     us(percentile(big, 95)), f"{statistics.fmean(big) / statistics.fmean(small):.2f}x"))
    out += table(["operation", f"fresh mean", f"{large['rows']:,} rows mean", "median", "p95", "large / fresh"], rows)
    out += ["`EXPLAIN QUERY PLAN` at that size, in the order `index_bench` lists its queries:", ""]
    return out + [f"{i}. `{plan}`" for i, plan in enumerate(large["plans"], 1)] + [""]


# --- format: serialization ----------------------------------------------------------------

OP_NAME = re.compile(r"^(?:(A|B)-(\w+)-(.+)|startup-(\w+))-(\d+)\.proc\.json$")


def format_runs(results):
    """(case, phase, contender) -> [result, ...] in round order: the process totals
    (timed_run.py) with the program's own measurements over them."""
    ops = defaultdict(list)
    for path in sorted(glob.glob(os.path.join(results, "*.proc.json")),
                       key=lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p)]):
        match = OP_NAME.match(os.path.basename(path))
        if not match:
            continue
        case, phase, who, startup, _ = match.groups()
        record = load(path)
        own = path[: -len(".proc.json")] + ".json"
        if os.path.exists(own):
            record.update(load(own))
        ops[("-", "startup", startup) if startup else (case, phase, who)].append(record)
    return ops


def wall(r):
    return r.get("wall_s", r["process_wall_s"])


def cpu(r):
    return r["user_s"] + r["sys_s"] if "user_s" in r else r["process_user_s"] + r["process_sys_s"]


def growth(r):
    return r["peak_rss_kib"] - r["rss_before_kib"] if "rss_before_kib" in r else None


def busy(records):
    values = [r["other_cpu_cores"] for r in records if r.get("other_cpu_cores") is not None]
    return f"{median(values):.2f} / {max(values):.2f}" if values else "-"


def faults(records):
    minor, major = median(r.get("minflt") for r in records), median(r.get("majflt") for r in records)
    return "-" if minor is None else f"{minor:,.0f} / {major:,.0f}"


def op_table(ops, case, phase, label):
    rows = []
    for (c, p, who), records in ops.items():
        if (c, p) != (case, phase):
            continue
        rows.append((f"`{who}`", f"**{secs(median(wall(r) for r in records))}**", span(wall(r) for r in records),
                     secs(median(cpu(r) for r in records)), secs(median(r.get("sys_s") for r in records)),
                     faults(records),
                     mib(median(r.get("peak_rss_kib", r["process_maxrss_kib"]) for r in records)),
                     mib(median(growth(r) for r in records)), secs(median(r.get("touch_wall_s") for r in records)),
                     secs(median(r["process_wall_s"] for r in records)), busy(records)))
    if not rows:
        return []
    return [f"{label}:", ""] + table(
        [phase if phase != "warm" and phase != "cold" else f"load ({phase})", "wall", "min – max", "CPU", "of it system",
         "faults minor / major", "peak RSS", "peak − RSS before", "then sum all", "process wall",
         "others' cores med / max"], rows)


# (label, case, phase, numerator, denominator, metric, target as text)
RATIOS = [
    ("save: ckpt / dd", "A", "save", "ckpt", "dd", wall, "≤ 1.05x"),
    ("save in the what-if rounds: ckpt / dd", "A", "wsave", "ckpt", "dd", wall, "≤ 1.05x"),
    ("save CPU: ckpt / Python", "A", "save", "ckpt", "python", cpu, "≤ 0.25x"),
    ("save CPU: ckpt / Python", "B", "save", "ckpt", "python", cpu, "≤ 0.25x"),
    ("save: Python / ckpt", "B", "save", "python", "ckpt", wall, "≥ 3x"),
    ("eager load, warm: Python / ckpt", "A", "warm", "python", "ckpt-eager", wall, "≥ 4x"),
    ("eager load, cold: Python / ckpt", "A", "cold", "python", "ckpt-eager", wall, ""),
    ("eager load, warm: pickle_load / ckpt", "A", "warm", "pickle", "ckpt-eager", wall, "≥ 10x"),
    ("mapped load, warm: ckpt / Python", "A", "warm", "ckpt-mmap", "python", wall, "≤ 1%"),
    ("mapped load, cold: ckpt / Python", "A", "cold", "ckpt-mmap", "python", wall, ""),
    ("eager load, warm: Python / ckpt", "B", "warm", "python", "ckpt-eager", wall, "≥ 3x"),
    ("eager load, cold: Python / ckpt", "B", "cold", "python", "ckpt-eager", wall, ""),
]


def ratio_table(ops):
    rows = []
    for label, case, phase, num, den, metric, target in RATIOS:
        a, b = ops.get((case, phase, num)), ops.get((case, phase, den))
        if not (a and b):
            continue
        per_round = sorted(metric(x) / metric(y) for x, y in zip(a, b))
        rows.append((label, case, f"{secs(median(map(metric, a)))} / {secs(median(map(metric, b)))}",
                     f"**{times(median(map(metric, a)) / median(map(metric, b)))}**",
                     f"{times(per_round[0])} – {times(per_round[-1])}", target))
    return table(["ratio", "case", "medians", "ratio of medians", "per round (min – max)", "target"], rows)


def whatif_tables(ops):
    out = []
    hashes = ops.get(("A", "whash", "hash"))
    if hashes:
        out += ["Hashing case A's 1 GiB in memory, no I/O (`format_whatif hash`), CPU median of "
                f"{len(hashes)}: XXH3-128 {secs(median(r['xxh3_user_s'] + r['xxh3_sys_s'] for r in hashes))}, "
                f"CRC-32 {secs(median(r['crc32_user_s'] + r['crc32_sys_s'] for r in hashes))}.", ""]
    headers = [(who, records) for (c, p, who), records in ops.items() if (c, p) == ("A", "wheaders")]
    if headers:
        out += ["Reading the zip local headers of case A's file, cold (`whatif_headers.py`):", ""]
        out += table(["variant", "headers", "wall", "min – max", "file resident afterwards"],
                     [(f"`{who}`", records[0]["headers"], secs(median(r["wall_s"] for r in records)),
                       span(r["wall_s"] for r in records),
                       f"{median(r['resident_after'] for r in records) / MIB:,.1f} of {records[0]['file_bytes'] / MIB:,.0f} MiB")
                      for who, records in headers])
    return out


def format_tables(results):
    info = load(os.path.join(results, "run.json"))
    ops = format_runs(results)
    out = run_table(info)
    startup = [(who, records) for (c, _, who), records in ops.items() if c == "-"]
    out += table(["process start-up (not in the times below)", "wall", "min – max"],
                 [(f"`{who}`", secs(median(r["process_wall_s"] for r in records)), span(r["process_wall_s"] for r in records))
                  for who, records in startup])
    out += ["Ratios within this run:", ""] + ratio_table(ops)
    for case in ("A", "B"):
        for phase, label in (("save", "saves"), ("warm", "loads, warm page cache"), ("cold", "loads, cold page cache"),
                             ("wsave", "what-if saves (`format_whatif save`, with ckpt and dd in the same rounds)"),
                             ("wload", "what-if loads, warm (`format_whatif load`, with ckpt in the same rounds)")):
            out += op_table(ops, case, phase, f"**Case {case}**, {label}")
    return out + whatif_tables(ops)


# --- dedupe: the guide's loop, bytes and time per epoch ---------------------------------------

DEDUPE_SIDES = [
    ("ckpt", "ckpt: the manager (unchanged state announced, hashed, linked)"),
    ("ckpt-unannounced", "ckpt: the store without the hint (temp file written, compared, dropped unsynced)"),
    ("ckpt-nolink", "ckpt on a file system without hard links (both saves write)"),
    ("python", "the guide's Python (two durable `torch.save`)"),
]


def dedupe_tables(results):
    runs = defaultdict(list)
    for path in sorted(glob.glob(os.path.join(results, "dedupe-*.json"))):
        record = load(path)
        runs[record["side"]].append(record)
    out = ["**Machine and run**", ""] + run_table(load(os.path.join(results, "run.json")))
    loads = [r["loadavg_1min"] for records in runs.values() for r in records if "loadavg_1min" in r]
    if loads:
        out += [f"Machine load (1-minute load average at the end of each run, 2 cores): "
                f"{min(loads):.1f} – {max(loads):.1f}.", ""]
    rows, epoch_seconds = [], {}
    for side, label in DEDUPE_SIDES:
        records = runs.get(side)
        if not records:
            continue
        state = records[0]["state_bytes"]
        per_epoch = lambda key: [v / r["state_bytes"] for r in records for v in r[key]]  # noqa: E731
        net = [(w - c) / r["state_bytes"] for r in records
               for w, c in zip(r["write_bytes"], r["cancelled_write_bytes"])]
        seconds = [v for r in records for v in r["seconds"]]
        epoch_seconds[side] = median(seconds)
        rows.append((label, f"{state / MIB:,.0f} MiB", f"{len(records)} × {records[0]['epochs']}",
                     times(median(per_epoch("seam_bytes"))), times(median(per_epoch("write_bytes"))),
                     times(median(net)), f"{times(min(net))} – {times(max(net))}",
                     secs(median(seconds)), span(seconds)))
    out += ["**Bytes written per epoch**, as multiples of the state's bytes (the payload file's size), "
            "and the epoch's two saves' wall time (medians over every epoch of every run):", ""]
    out += table(["contender", "state", "runs × epochs", "payload bytes through the seam", "write_bytes",
                  "write_bytes − cancelled", "min – max", "time per epoch", "min – max"], rows)
    if "python" in epoch_seconds:
        ratios = [(label, times(epoch_seconds[side] / epoch_seconds["python"]))
                  for side, label in DEDUPE_SIDES if side in epoch_seconds and side != "python"]
        out += ["Time per epoch, ratio to the guide's Python in the same rounds:", ""]
        out += table(["contender", "ckpt / Python"], ratios)
    return out


# --- restore: a resume's load of a large model ------------------------------------------------

RESTORE_SIDES = [
    ("in-place", "ckpt: `restore_file` (restore in place; CRC-32 in both passes)"),
    ("manager", "ckpt: `load_latest_checkpoint_into` (restore in place; plus the whole-file hash)"),
    ("load-file", "ckpt: `load_file` + `load_state_dict` (the State first)"),
    ("python", "Python: `torch.load` + `load_state_dict`"),
]


def restore_tables(results):
    runs = defaultdict(list)
    for path in sorted(glob.glob(os.path.join(results, "restore-*.json"))):
        record = load(path)
        runs[record["side"]].append(record)
    out = ["**Machine and run**", ""] + run_table(load(os.path.join(results, "run.json")))
    loads = [r["loadavg_1min"] for records in runs.values() for r in records if "loadavg_1min" in r]
    if loads:
        out += [f"Machine load (1-minute load average at the end of each run, 2 cores): "
                f"{min(loads):.1f} – {max(loads):.1f}.", ""]
    rows, walls = [], {}
    for side, label in RESTORE_SIDES:
        records = runs.get(side)
        if not records:
            continue
        state = records[0]["state_bytes"]
        wall = [r["wall_s"] for r in records]
        cpu = [r["user_s"] + r["sys_s"] for r in records]
        extra = [(r["peak_rss_kib"] - r["rss_before_kib"]) / 1024 for r in records]
        walls[side] = median(wall)
        rows.append((label, f"{state / MIB:,.0f} MiB", str(len(records)), secs(median(wall)), span(wall),
                     secs(median(cpu)), f"{median([r['minflt'] for r in records]):,.0f}",
                     f"{median([r['peak_rss_kib'] for r in records]) / 1024:,.0f} MiB",
                     f"{median(extra):,.0f} MiB", f"{min(extra):,.0f} – {max(extra):,.0f} MiB"))
    out += ["**One load of the model into its module** (medians over the runs; one load per process, the "
            "file warm in the page cache; RSS before = the process with its model resident):", ""]
    out += table(["contender", "file", "runs", "wall time", "min – max", "CPU time", "minor faults",
                  "peak RSS", "peak − RSS before", "min – max"], rows)
    if "python" in walls:
        ratios = [(label, times(walls["python"] / walls[side]))
                  for side, label in RESTORE_SIDES if side in walls and side != "python"]
        out += ["Speed-up over Python in the same rounds (Python's median wall time / the contender's):", ""]
        out += table(["contender", "Python / ckpt"], ratios)
# --- async: the training thread's stall per checkpoint, a loop's steps per second -----------

ASYNC_STALL_SIDES = [
    ("python", "the guide's Python: `torch.save` + fsync (synchronous)"),
    ("sync", "ckpt: `save_epoch_checkpoint` (synchronous)"),
    ("copy", "ckpt: `save_epoch_checkpoint_async`, `Snapshot::copy`"),
    ("borrow", "ckpt: `save_epoch_checkpoint_async`, `Snapshot::borrow`"),
]
ASYNC_LOOP_SIDES = [
    ("none", "no checkpoints"),
    ("async", "`save_epoch_checkpoint_async` every epoch (copy)"),
    ("sync", "`save_epoch_checkpoint` every epoch"),
]


def async_tables(results):
    runs = defaultdict(list)
    for path in sorted(glob.glob(os.path.join(results, "async-*.json"))):
        record = load(path)
        key = (record["kind"], record["mode"])
        runs[key].append(record)
    out = ["**Machine and run**", ""] + run_table(load(os.path.join(results, "run.json")))
    stall = {}
    rows = []
    for side, label in ASYNC_STALL_SIDES:
        records = runs.get(("stall", side))
        if not records:
            continue
        samples = [v / 1e6 for r in records for v in r["samples_us"]]
        complete = [v / 1e6 for r in records for v in r.get("complete_us", [])]
        stall[side] = median(samples)
        rows.append((label, f"{records[0]['payload_bytes'] / MIB:,.0f} MiB", f"{len(records)} × {records[0]['saves']}",
                     secs(median(samples)), span(samples), secs(median(complete)) if complete and side in ("copy", "borrow") else "-"))
    out += ["**Stall per checkpoint**: how long the save call holds the training thread (medians over every save "
            "of every run); for the asynchronous forms also what is left of the save once the call returned "
            "(`wait()`, timed apart):", ""]
    out += table(["contender", "payload", "runs × saves", "stall", "min – max", "rest of the save"], rows)
    if "python" in stall:
        share = lambda x: f"{100 * x:.2f}%" if x >= 0.001 else f"{100 * x:.4f}%"  # noqa: E731
        ratios = [(label, share(stall[side] / stall["python"]))
                  for side, label in ASYNC_STALL_SIDES if side in stall and side != "python"]
        out += ["Stall, as a share of the guide's Python save in the same rounds (target for async: at most 2%):", ""]
        out += table(["contender", "stall / Python's"], ratios)
    rates, rows = {}, []
    for side, label in ASYNC_LOOP_SIDES:
        records = runs.get(("loop", side))
        if not records:
            continue
        values = [r["steps_per_second"] for r in records]
        rates[side] = median(values)
        rows.append((label, f"{len(records)} × {records[0]['epochs']} epochs of {records[0]['steps']} steps",
                     f"{median(values):,.1f}", f"{min(values):,.1f} – {max(values):,.1f}",
                     f"{100 * median(values) / rates['none']:.1f}%" if "none" in rates else "-"))
    if rows:
        out += ["**A small training loop** (four 1024×1024 float32 weights, 16 MiB, updated in place each step), "
                "steps per second, median over runs (target for async: within 3% of no checkpoints):", ""]
        out += table(["checkpointing", "runs", "steps/s", "min – max", "of no checkpoints"], rows)
    return out


# --- the document ---------------------------------------------------------------------------

def replace_part(text, name, lines):
    begin, end = f"<!-- tables: {name} -->", f"<!-- end of tables: {name} -->"
    if begin not in text or end not in text:
        raise SystemExit(f"render_report: {begin} ... {end} not found in the report")
    head, rest = text.split(begin, 1)
    return head + begin + "\n\n" + "\n".join(lines).strip("\n") + "\n\n" + end + rest.split(end, 1)[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--core", help="bench/run_benchmarks.sh's results (BUILD_DIR/bench/results)")
    parser.add_argument("--format", help="bench/run_format_benchmarks.sh's results (BUILD_DIR/bench/results-format)")
    parser.add_argument("--dedupe", help="bench/run_benchmarks.sh's dedupe results (BUILD_DIR/bench/results-dedupe)")
    parser.add_argument("--restore", help="bench/run_benchmarks.sh's restore results (BUILD_DIR/bench/results-restore)")
    parser.add_argument("--async", dest="async_results", help="bench/run_benchmarks.sh's async results (BUILD_DIR/bench/results-async)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    with open(args.out) as f:
        text = f.read()
    if args.core:
        text = replace_part(text, "core", core_tables(args.core))
    if args.format:
        text = replace_part(text, "format", format_tables(args.format))
    if args.dedupe:
        text = replace_part(text, "dedupe", dedupe_tables(args.dedupe))
    if args.restore:
        text = replace_part(text, "restore", restore_tables(args.restore))
    if args.async_results:
        text = replace_part(text, "async", async_tables(args.async_results))
    with open(args.out, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
