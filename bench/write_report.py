"""write_report.py: turns bench/run_benchmarks.sh's results into docs/benchmarks.md.

Every number in the report comes from the result files of one run of the script; the
statistics for both sides are computed here, by the same code, from the raw samples.
Standard library only.
"""

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
from collections import defaultdict

SAVE_RATIO_TARGET = 1.5  # C++ epoch save at most 1.5x the durable Python save
QUERY_TARGET_US = 1000.0  # resume and best lookup at most 1 ms each


def percentile(sorted_samples, p):
    # Nearest rank: the same definition as bench/bench_stats.hpp, so the programs'
    # printouts and this report agree.
    if not sorted_samples:
        return 0.0
    rank = -(-p * len(sorted_samples) // 100)
    return sorted_samples[min(max(int(rank), 1), len(sorted_samples)) - 1]


def summarize(samples):
    ordered = sorted(samples)
    return {
        "n": len(ordered),
        "mean": sum(ordered) / len(ordered) if ordered else 0.0,
        "median": percentile(ordered, 50),
        "p95": percentile(ordered, 95),
    }


def run(*command):
    try:
        return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine_info(runs_dir, build_dir):
    cpu_model = "unknown"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    df_lines = run("df", "-T", runs_dir).splitlines()
    device, fs_type = (df_lines[1].split()[:2] if len(df_lines) > 1 else ("unknown", "unknown"))
    fs_notes = []
    if fs_type == "ext4":
        # Without a journal an ext4 fsync writes the file and its inode only, which makes it
        # much cheaper than on a journaled ext4; worth knowing when reading absolute times.
        journal_task = os.path.join("/sys/fs/ext4", os.path.basename(device), "journal_task")
        if os.path.exists(journal_task):
            with open(journal_task) as task:
                fs_notes.append("no journal" if task.read().strip() == "<none>" else "journaled")
    with open("/proc/mounts") as mounts:
        for line in mounts:
            fields = line.split()
            if len(fields) > 3 and fields[0] == device and fields[2] == fs_type:
                fs_notes.append(f"mounted {fields[3]}")
                break
    cache = {}
    with open(os.path.join(build_dir, "CMakeCache.txt")) as cache_file:
        for line in cache_file:
            match = re.match(r"([A-Za-z_]+):[A-Z]+=(.*)", line.strip())
            if match:
                cache[match.group(1)] = match.group(2)
    compiler = run(cache.get("CMAKE_CXX_COMPILER", "c++"), "--version").splitlines()[0]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    memory = "unknown"
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / (1 << 20):.1f} GiB"
                break
    read_ahead = "unknown"
    block = os.path.join("/sys/class/block", os.path.basename(device))
    for candidate in (block, os.path.dirname(os.path.realpath(block))):
        path = os.path.join(candidate, "queue", "read_ahead_kb")
        if os.path.exists(path):
            with open(path) as value:
                read_ahead = f"{value.read().strip()} KiB"
            break
    return {
        "read_ahead": read_ahead,
        "memory": memory,
        "nproc": run("nproc"),
        "cpu": cpu_model,
        "kernel": run("uname", "-r"),
        "fs": f"{fs_type} on {device}" + (f" ({', '.join(fs_notes)})" if fs_notes else ""),
        "runs_dir": os.path.relpath(runs_dir, root),
        "build_type": cache.get("CMAKE_BUILD_TYPE", "unknown"),
        "compiler": compiler,
        "python": f"{sys.executable} {platform.python_version()}",
    }


def load(path):
    with open(path) as result:
        return json.load(result)


# --- strace ---------------------------------------------------------------------------

STRACE_LINE = re.compile(r"^(\d+)\s+(.*)$")
# fsync(7</dir/file>) = 0, or the first half of a call another thread interrupted.
FD_CALL = re.compile(r"^(\w+)\(\d+<([^>]*)>")
# The second half of an interrupted call; the first half named the file.
RESUMED = re.compile(r"^<\.\.\. (\w+) resumed>")
# sync(), msync(addr, ...): calls without a file descriptor.
OTHER_CALL = re.compile(r"^(\w+)\(")


def classify(path):
    """What a synced file is to the save protocol, from its name."""
    name = os.path.basename(path)
    if name.endswith(".tmp"):
        return "temp file"
    if name == "index.sqlite-wal":
        return "SQLite WAL"
    if name == "index.sqlite":
        return "SQLite database file"
    if name == "index.sqlite-journal":
        return "SQLite rollback journal"
    if name.startswith(("cpp-", "python-")):
        return "checkpoint directory"
    return "other: " + path


def parse_strace(path):
    """Calls per (syscall, category), from `strace -f -y` output."""
    calls = defaultdict(int)
    with open(path) as log:
        for line in log:
            match = STRACE_LINE.match(line.rstrip("\n"))
            if not match:
                continue
            rest = match.group(2)
            if rest.startswith(("+++", "---")) or RESUMED.match(rest):
                continue  # exits, signals; a resumed call was counted at its first half
            fd_call = FD_CALL.match(rest)
            if fd_call:
                calls[(fd_call.group(1), classify(fd_call.group(2)))] += 1
                continue
            other = OTHER_CALL.match(rest)
            if other:
                calls[(other.group(1), "no file descriptor")] += 1
    return calls


def fsyncs_per_save(results, side, saves):
    """Per-save calls by (syscall, category): (N saves - 0 saves) / N."""
    full_path = os.path.join(results, f"strace-{side}-{saves}.log")
    setup_path = os.path.join(results, f"strace-{side}-0.log")
    if saves == 0 or not (os.path.exists(full_path) and os.path.exists(setup_path)):
        return None
    full_calls = parse_strace(full_path)
    setup_calls = parse_strace(setup_path)
    rows = {}
    for key in set(full_calls) | set(setup_calls):
        calls = (full_calls[key] - setup_calls[key]) / saves
        if abs(calls) < 1e-9:
            continue
        rows[key] = {"calls": calls, "total": full_calls[key] - setup_calls[key]}
    return rows


REASONS = {
    ("cpp", "temp file"): "step 2: the payload's bytes are durable before anything refers to them",
    ("cpp", "SQLite WAL"): "step 3: the pending row (size, hash) commits with synchronous=FULL, so that "
    "recovery can decide by content whether the rename happened; one per save. The commit of step 6 "
    "and rotation's commit of step 7 use synchronous=NORMAL and add none. The excess over 1.000 is "
    "SQLite's automatic checkpoints (every 1000 WAL pages): the WAL is synced before a checkpoint "
    "and its header when the file is reused after one",
    ("cpp", "checkpoint directory"): "step 5: the rename onto `checkpoint_epoch_N.pth` is durable",
    ("cpp", "SQLite database file"): "SQLite's automatic checkpoint copies the WAL into `index.sqlite` "
    "and syncs it; amortized over the saves between checkpoints",
    ("python", "temp file"): "flush + `os.fsync` of `<file>.tmp` before `os.replace`",
    ("python", "checkpoint directory"): "fsync of the directory after `os.replace`",
}


# The order in which a save makes its syncs.
CATEGORY_ORDER = ["temp file", "SQLite WAL", "checkpoint directory", "SQLite database file"]


def protocol_order(category):
    return (CATEGORY_ORDER.index(category) if category in CATEGORY_ORDER else len(CATEGORY_ORDER), category)


def reason(side, category):
    return REASONS.get((side, category), "")


# --- formatting -----------------------------------------------------------------------

def us(value):
    return f"{value:,.1f} µs" if value < 10_000 else f"{value / 1000:,.2f} ms"


def verdict(ok):
    return "**pass**" if ok else "**miss**"


def save_section(results, rounds, saves):
    pooled = {"cpp": [], "python": []}
    phase_sums = {"cpp": defaultdict(float), "python": defaultdict(float)}
    meta = {}
    per_round = []
    for round_number in range(1, rounds + 1):
        means = {}
        for side in pooled:
            result = load(os.path.join(results, f"save-{side}-{round_number}.json"))
            pooled[side].extend(result["samples_us"])
            for phase, mean_us in result.get("phases_us", {}).items():
                phase_sums[side][phase] += mean_us / rounds
            meta[side] = result
            means[side] = summarize(result["samples_us"])["mean"]
        per_round.append((round_number, "C++ first" if round_number % 2 else "Python first", means))
    stats = {side: summarize(samples) for side, samples in pooled.items()}
    ratio = {k: stats["cpp"][k] / stats["python"][k] for k in ("mean", "median", "p95")}
    round_ratios = [means["cpp"] / means["python"] for _, _, means in per_round]

    lines = [
        "## Epoch save: ckpt vs the guide's Python save made durable",
        "",
        f"Each side saves a small state (one 1024-element float32 tensor, 4 KiB, plus an `epoch` int) "
        f"{saves} times as epoch checkpoints with `max_to_keep=5`, epochs 0 to {saves - 1}, into a fresh "
        f"directory; from the sixth save on, every save also rotates the oldest epoch out. A sample is one "
        f"whole `save_epoch_checkpoint` call: serialization, temp file, fsyncs, rename, rotation.",
        "",
        "- **C++**: `ckpt::CheckpointManager::save_epoch_checkpoint` (`bench/save_bench.cpp`), logger off.",
        "- **Python**: the guide's `_save` (`torch.save` to `<file>.tmp`, `os.replace`) made durable with "
        "flush + `os.fsync` of the temp file and an fsync of the directory, then the guide's cleanup (glob "
        "`checkpoint_epoch_*.pth`, parse, delete beyond 5) (`bench/python_guide_save.py`). Without the "
        "fsyncs the guide's save is not durable, and the comparison would only measure them.",
        "",
        f"Both sides ran {rounds} times each in this run, alternating which goes first; the table pools "
        f"all {stats['cpp']['n']} samples per side. Payloads: C++ {meta['cpp']['payload_bytes']} bytes "
        f"(libtorch {meta['cpp']['torch']}), Python {meta['python']['payload_bytes']} bytes "
        f"(torch {meta['python']['torch']}).",
        "",
        "| | mean | median | p95 |",
        "|---|---:|---:|---:|",
        f"| C++ ckpt | {us(stats['cpp']['mean'])} | {us(stats['cpp']['median'])} | {us(stats['cpp']['p95'])} |",
        f"| Python guide, durable | {us(stats['python']['mean'])} | {us(stats['python']['median'])} | "
        f"{us(stats['python']['p95'])} |",
        f"| **ratio C++ / Python** | **{ratio['mean']:.2f}x** | **{ratio['median']:.2f}x** | "
        f"**{ratio['p95']:.2f}x** |",
        "",
        target_sentence(ratio, round_ratios),
        "",
        "| round | order | C++ mean | Python mean | ratio |",
        "|---:|---|---:|---:|---:|",
    ]
    for (number, order, means), round_ratio in zip(per_round, round_ratios):
        lines.append(f"| {number} | {order} | {us(means['cpp'])} | {us(means['python'])} | {round_ratio:.2f}x |")
    lines.append("")
    lines += phase_lines(phase_sums)
    return lines, stats


def target_sentence(ratio, round_ratios):
    """The verdict on the mean ratio, flagged as marginal when the other statistics or the
    per-round ratios fall on the other side of the target."""
    passed = ratio["mean"] <= SAVE_RATIO_TARGET
    spread = f"the per-round ratio of means ranged from {min(round_ratios):.2f}x to {max(round_ratios):.2f}x"
    disagreeing = [f"{name} {ratio[name]:.2f}x" for name in ("median", "p95")
                   if (ratio[name] <= SAVE_RATIO_TARGET) != passed]
    straddles = min(round_ratios) <= SAVE_RATIO_TARGET < max(round_ratios)
    outcome = verdict(passed)
    details = f"{ratio['mean']:.2f}x; {spread}"
    if disagreeing or straddles:
        outcome = f"**{'pass' if passed else 'miss'}, at the margin**"
        if disagreeing:
            side = "over" if passed else "within"
            noun = "ratio is" if len(disagreeing) == 1 else "ratios are"
            details = (f"{ratio['mean']:.2f}x; but the {' and '.join(disagreeing)} {noun} {side} "
                       f"{SAVE_RATIO_TARGET}x, and {spread}")
    return f"Target: C++ mean at most {SAVE_RATIO_TARGET}x the Python mean: {outcome} ({details})."


PHASES = [
    ("serialize_write", "encode the state, create and write the temp file (C++ also checks free space)"),
    ("fsync_temp", "fsync and close the temp file"),
    ("index_pending", "insert the pending row and commit it with synchronous=FULL: one WAL fdatasync"),
    ("rename", "rename the temp file onto `checkpoint_epoch_N.pth`"),
    ("fsync_dir", "fsync the directory"),
    ("index_commit", "commit the row, retire the rotated-out row (synchronous=NORMAL: SQL, no fsync)"),
    ("rotation", "C++: find rows to delete, unlink, mark them deleted; Python: glob, parse, unlink"),
    ("other", "C++: re-read the committed row, return"),
]


def phase_lines(phase_sums):
    """Where each side's mean save time goes, phase by phase, and the difference."""
    if not phase_sums["cpp"] or not phase_sums["python"]:
        return []
    lines = [
        "Where the time goes: mean per save of each phase, pooled over the rounds. ckpt's phases "
        "are timed at the steps its store reports (`StoreOptions::on_step`), the Python save's by "
        "reading the clock between its statements; either costs about a microsecond per save.",
        "",
        "| phase | C++ | Python | C++ - Python | what |",
        "|---|---:|---:|---:|---|",
    ]
    known = [name for name, _ in PHASES]
    extra = [name for side in phase_sums.values() for name in side if name not in known]
    descriptions = dict(PHASES)
    totals = {"cpp": 0.0, "python": 0.0}
    for name in known + sorted(set(extra)):
        if name not in phase_sums["cpp"] and name not in phase_sums["python"]:
            continue
        values = {side: phase_sums[side].get(name) for side in totals}
        for side, value in values.items():
            totals[side] += value or 0.0
        cells = [us(values[side]) if values[side] is not None else "-" for side in ("cpp", "python")]
        difference = (values["cpp"] or 0.0) - (values["python"] or 0.0)
        lines.append(f"| `{name}` | {cells[0]} | {cells[1]} | {difference:+,.1f} µs | "
                     f"{descriptions.get(name, '')} |")
    lines += [
        f"| **total** | **{us(totals['cpp'])}** | **{us(totals['python'])}** | "
        f"**{totals['cpp'] - totals['python']:+,.1f} µs** | |",
        "",
        "Reading the ratio: ckpt's save syncs three times where the durable Python save syncs twice "
        "(the third is the pending index row, which lets recovery decide a crashed save by content; "
        "see the fsync table below). If every sync costs the same f, the ratio is (a + 3f) / (b + 2f), "
        "where a and b are each side's work outside the syncs, and that is at most 1.5x exactly when "
        "a ≤ 1.5·b, whatever f is. So the target is decided by ckpt's work between the syncs "
        "(serialization, SQL, rotation), not by the disk; a slow disk only pulls the ratio towards 1.5x.",
        "",
    ]
    return lines


def fsync_section(results, saves, stats):
    lines = [
        "## fsyncs per save",
        "",
        "Counted, not assumed: each side ran once more under "
        "`strace -f -y -e trace=fsync,fdatasync,sync,syncfs,sync_file_range,msync` with "
        f"{saves} saves and once with 0 saves (setup only: creating the index, for ckpt); the table is "
        f"(calls with {saves} saves - calls with 0) / {saves}. `-y` names the file behind each "
        "descriptor, which tells the temp file, the WAL and the directory apart. (The traced runs are "
        "not the timed ones; the phase table above says what the syncs cost.)",
        "",
    ]
    for side, title in (("cpp", "C++ ckpt"), ("python", "Python guide, durable")):
        rows = fsyncs_per_save(results, side, saves)
        if rows is None:
            lines += [f"{title}: not counted (strace unavailable).", ""]
            continue
        total_calls = sum(row["calls"] for row in rows.values())
        lines += [
            f"**{title}: {total_calls:.2f} sync calls per save.**",
            "",
            "| call | file | per save | calls in the run | why |",
            "|---|---|---:|---:|---|",
        ]
        for (syscall, category), row in sorted(rows.items(), key=lambda item: protocol_order(item[0][1])):
            lines.append(f"| `{syscall}` | {category} | {row['calls']:.3f} | {row['total']} | "
                         f"{reason(side, category)} |")
        lines.append("")
    lines += [
        "Neither side syncs after rotation's unlinks: a power loss can bring a rotated-out file back. "
        "ckpt's recovery recognizes it by its hash in a 'deleting'/'deleted' row and deletes it again; "
        "the guide's next cleanup deletes it again by its epoch number.",
        "",
    ]
    return lines


def index_section(results):
    index = load(os.path.join(results, "index.json"))
    fresh, large = index["phases"]
    operations = [
        ("`latest()` (resume lookup)", "latest_us", True),
        ("`best()` (best lookup)", "best_us", True),
        ("open: constructor (lock, index, recovery)", "open_us", False),
        ("epoch save through `CheckpointStore` (rotation included)", "save_us", False),
    ]
    lines = [
        f"## Index: resume and best lookup at {large['rows']:,} rows",
        "",
        f"`bench/index_bench.cpp` (torch-free, links `ckpt::core`). The large directory's index holds "
        f"{large['rows']:,} checkpoint rows and {large['events']:,} events: {index['history_rows']:,} rows of "
        f"history (epoch rows 'deleted' by rotation, a best model every 25 epochs 'replaced' by the next, an "
        f"interrupt checkpoint every 5,000 epochs consumed and deleted, each with the events the store logs) "
        f"were bulk-inserted with SQLiteCpp in one transaction ({index['history_insert_seconds']:.1f} s), "
        f"after which the newest {len(large['save_us'])} epochs and 2 best models were saved for real through "
        f"`CheckpointStore` (max_to_keep={index['max_to_keep']}, {index['payload_bytes']}-byte payloads), so the "
        f"live rows and files are the store's own. The fresh directory holds only those real saves "
        f"({fresh['rows']} rows). Saves and opens alternate between the two directories (after a "
        f"`sync()` that flushes the history), so that drift in the disk's latency reaches both alike. "
        f"Lookups: {index['iterations']:,} calls each after 100 warm-up calls; opens: "
        f"{len(large['open_us'])} per directory (constructor only; the close that follows is not timed). "
        f"SQLite {index['sqlite']}.",
        "",
        f"| operation | fresh ({fresh['rows']} rows) mean | {large['rows']:,} rows mean | median | p95 | "
        f"target | |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    for label, key, has_target in operations:
        small, big = summarize(fresh[key]), summarize(large[key])
        target = f"≤ {us(QUERY_TARGET_US)}" if has_target else "none"
        outcome = verdict(big["mean"] <= QUERY_TARGET_US) if has_target else ""
        lines.append(f"| {label} | {us(small['mean'])} | {us(big['mean'])} | {us(big['median'])} | "
                     f"{us(big['p95'])} | {target} | {outcome} |")
    lines += [
        "",
        "Query plans at this size (`EXPLAIN QUERY PLAN` of the SQL in `src/index/index.cpp`): "
        "`latest()` runs the first once for each resumable status and kind (committed epoch, committed "
        "and consumed interrupt) and takes the most recent commit, `best()` the second, rotation the "
        "third, each commit the fourth. The lookups are range scans of "
        "`checkpoints_by_status_kind_commit`, so their cost follows the live rows, not the history; "
        "the next `commit_seq` is one step down `checkpoints_by_commit_seq`.",
        "",
    ]
    names = ["resume probe (committed epoch)", "best model", "rotation", "next commit_seq"]
    for name, plan in zip(names, large["plans"]):
        lines.append(f"- {name}: `{plan}`")
    lines.append("")
    return lines


# --- parts and the whole document ----------------------------------------------------------

# Each part of the report is regenerated from its own result files when they exist, and
# otherwise carried over from the current docs/benchmarks.md, so that running one part
# (run_benchmarks.sh --only ...) rewrites the document without losing the other.
PART_BEGIN = "<!-- part: {} (generated from its own run; see the Machine table for when) -->"
PART_END = "<!-- end of part: {} -->"
# Documents written before the parts were marked: the headings that began each part.
LEGACY_HEADINGS = {"core": "## Epoch save", "format": "## Serialization"}


def carried_over(text, part):
    """The lines of `part` in an existing report, or None."""
    begin, end = PART_BEGIN.format(part), PART_END.format(part)
    if begin in text and end in text:
        inner = text.split(begin, 1)[1].split(end, 1)[0]
        return inner.strip("\n").splitlines()
    heading = LEGACY_HEADINGS[part]
    if heading not in text:
        return None
    rest = text[text.index(heading):]
    # A legacy document ends a part where the other part's heading begins.
    for other, other_heading in LEGACY_HEADINGS.items():
        if other != part and other_heading in rest:
            rest = rest[: rest.index(other_heading)]
    return rest.strip("\n").splitlines()


def carried_row(text, label):
    """A Machine-table row of an existing report, or None."""
    match = re.search(r"^\| " + re.escape(label) + r" \| (.*) \|$", text, re.M)
    return match.group(1) if match else None


def part_run(results, fallback_file):
    """(date, commit) of a part's run, from the run.json its runner wrote."""
    path = os.path.join(results, "run.json")
    if os.path.exists(path):
        info = load(path)
        return info.get("started", "unknown"), info.get("commit", "unknown")
    fallback = os.path.join(results, fallback_file)
    if os.path.exists(fallback):
        mtime = datetime.datetime.fromtimestamp(os.path.getmtime(fallback), datetime.timezone.utc)
        return mtime.strftime("%Y-%m-%d %H:%M UTC") + " (file time)", "unknown"
    return "unknown", "unknown"


def core_lines(args):
    """The core benchmarks' sections, or None when their results are missing."""
    if not os.path.exists(os.path.join(args.results, "save-cpp-1.json")):
        return None
    rounds = args.rounds
    if rounds is None:
        rounds = len([n for n in os.listdir(args.results) if re.fullmatch(r"save-cpp-\d+\.json", n)])
    saves = args.saves
    if saves is None:
        saves = load(os.path.join(args.results, "save-cpp-1.json"))["saves"]
    save_lines, stats = save_section(args.results, rounds, saves)
    return save_lines + fsync_section(args.results, saves, stats) + index_section(args.results)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", required=True, help="the core benchmarks' results")
    parser.add_argument("--format-results", help="bench/run_format_benchmarks.sh's results")
    parser.add_argument("--runs-dir", required=True)
    parser.add_argument("--build-dir", required=True)
    parser.add_argument("--saves", type=int, help="default: from the results")
    parser.add_argument("--rounds", type=int, help="default: from the results")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    old = ""
    if os.path.exists(args.out):
        with open(args.out) as existing:
            old = existing.read()
    df_dir = args.runs_dir if os.path.isdir(args.runs_dir) else os.path.join(args.build_dir, "bench")
    machine = machine_info(df_dir, args.build_dir)

    parts = []  # (name, title, lines, date, commit)
    generated = core_lines(args)
    if generated is not None:
        date, commit = part_run(args.results, "index.json")
        if commit == "unknown":  # results of a run from before run.json: its report said
            commit = (carried_row(old, "commit: core benchmarks (epoch save, fsyncs, index)")
                      or carried_row(old, "commit") or "unknown")
        parts.append(("core", "core benchmarks (epoch save, fsyncs, index)", generated, date, commit))
    elif carried_over(old, "core") is not None:
        parts.append(("core", "core benchmarks (epoch save, fsyncs, index)", carried_over(old, "core"),
                      carried_row(old, "run: core benchmarks (epoch save, fsyncs, index)")
                      or carried_row(old, "date") or "unknown",
                      carried_row(old, "commit: core benchmarks (epoch save, fsyncs, index)")
                      or carried_row(old, "commit") or "unknown"))
    fmt_results = args.format_results
    if fmt_results and os.path.exists(os.path.join(fmt_results, "run.json")):
        import format_report
        date, commit = part_run(fmt_results, "run.json")
        parts.append(("format", "serialization benchmarks", format_report.section(fmt_results), date, commit))
    elif carried_over(old, "format") is not None:
        parts.append(("format", "serialization benchmarks", carried_over(old, "format"),
                      carried_row(old, "run: serialization benchmarks") or "unknown",
                      carried_row(old, "commit: serialization benchmarks") or "unknown"))

    lines = [
        "# Benchmarks",
        "",
        "Generated by `bench/run_benchmarks.sh`; do not edit by hand, rerun it. Every number below "
        "comes from the result files of one run of its part, and the contenders compared in a part ran in "
        "that same run, on the same file system. Compare ratios; absolute times depend on the disk's fsync "
        "latency and throughput, which on a shared virtual machine drift from minute to minute.",
        "",
        "To reproduce:",
        "",
        "```sh",
        "bash bench/run_benchmarks.sh                  # everything: about 25 minutes",
        "bash bench/run_benchmarks.sh --only core      # epoch save, fsyncs, index (keeps the other part)",
        "bash bench/run_benchmarks.sh --only format    # serialization (keeps the other part)",
        "```",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
    ]
    for _, title, _, date, commit in parts:
        lines.append(f"| run: {title} | {date} |")
        lines.append(f"| commit: {title} | {commit} |")
    lines += [
        f"| CPUs (`nproc`) | {machine['nproc']} |",
        f"| CPU model | {machine['cpu']} |",
        f"| memory | {machine['memory']} |",
        f"| kernel | {machine['kernel']} |",
        f"| benchmark files | `{machine['runs_dir']}`: {machine['fs']} (`df -T`), read-ahead "
        f"{machine['read_ahead']} |",
        f"| build | {machine['build_type']}, {machine['compiler']} |",
        f"| Python | {machine['python']} |",
        "",
    ]
    for name, _, part_lines, _, _ in parts:
        body = list(part_lines)
        while body and not body[0].strip():
            body.pop(0)
        while body and not body[-1].strip():
            body.pop()  # so that a part carried over is laid out exactly as when it was generated
        lines += [PART_BEGIN.format(name), "", *body, "", PART_END.format(name), ""]
    with open(args.out, "w") as out:
        out.write("\n".join(lines).rstrip("\n") + "\n")


if __name__ == "__main__":
    main()
