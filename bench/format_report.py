"""format_report.py: the serialization section of docs/benchmarks.md.

Built from the result files of bench/run_format_benchmarks.sh (BUILD_DIR/bench/
results-format) by bench/write_report.py. Every number comes from those files; medians
are over the rounds of the run, and every ratio compares contenders of the same run.
Standard library only.
"""

import json
import os
import re
import statistics
from collections import defaultdict

GIB = 1 << 30
MIB = 1 << 20

# The targets (ratios measured in the same run).
SAVE_VS_DD = 1.05           # case A: durable save at most 1.05x dd conv=fsync
SAVE_CPU_VS_PYTHON = 0.25   # save CPU time at most 0.25x Python's
SAVE_RSS_OVER_STATE = 64 * MIB
LOAD_VS_PYTHON = 4.0        # case A: eager load at least 4x faster than torch.load
LOAD_VS_PICKLE = 10.0       # ... and 10x faster than pickle_load
MMAP_VS_PYTHON = 0.01       # case A: memory-mapped load at most 1% of torch.load's time
SMALL_VS_PYTHON = 3.0       # case B: save and load at least 3x faster than Python

CASES = {
    "A": "1 GiB: 256 float32 tensors of 4 MiB",
    "B": "80 MiB: 20,000 float32 tensors of 4 KiB",
}

SAVERS = [
    ("ckpt", "ckpt `save_file`",
     "encode; write with XXH3-128 and CRC-32 in the same pass; fsync, rename, fsync the directory"),
    ("manager", "ckpt `CheckpointManager::save_epoch_checkpoint`",
     "save_file's work, plus the free-space check and the index rows (one synchronous=FULL commit)"),
    ("dd", "`dd bs=1M conv=fsync` of ckpt's file",
     "the same bytes, read from a copy in memory (tmpfs): the disk's limit (process wall, includes exec)"),
    ("python", "Python `torch.save` made durable",
     "to `<file>.tmp`, flush, `os.fsync`, `os.replace`, fsync the directory"),
    ("pickle", "libtorch `torch::pickle_save` + `write` + `fsync`",
     "the whole archive built in memory, then written"),
]

LOADERS = [
    ("ckpt-eager", "ckpt `load_file` (eager)", "each record's CRC-32 checked while reading"),
    ("manager", "ckpt `CheckpointManager::load_latest_checkpoint`",
     "the same, plus the whole file's XXH3-128 against the index"),
    ("ckpt-mmap", "ckpt `load_file`, `memory_map`: time to return",
     "structure and pickle CRC only; tensor bytes neither read nor verified"),
    ("ckpt-mmap:touch", "... then sum every tensor (touches every page)", "page faults into the page cache"),
    ("python", "Python `torch.load`", "no checksum is checked"),
    ("pickle", "libtorch `torch::pickle_load`", "read the whole file into memory, then unpickle"),
    ("cat", "`cat file > /dev/null`", "reading the bytes (process wall, includes exec)"),
]

WHATIF_SAVES = [
    ("dd", "`dd bs=1M conv=fsync`"),
    ("plain", "write tensor memory in 1 MiB writes, fsync, rename, fsync dir"),
    ("hash", "... plus XXH3-128 and CRC-32 of each chunk before its write"),
    ("hash-copy", "... plus every other chunk copied into a 1 MiB buffer first (a model of ckpt)"),
    ("ckpt", "ckpt `save_file`"),
    ("hash-overlap", "hash, plus `sync_file_range(WRITE)` every 8 MiB: writeback overlaps hashing"),
]

WHATIF_HEADERS = [
    ("touch", "read a byte of each local header through a `MAP_PRIVATE` mapping (what `memory_map` does)"),
    ("willneed", "`madvise(MADV_WILLNEED)` each header's page first, then the same"),
    ("pread", "`pread` each header from the file descriptor"),
]

WHATIF_LOADS = [
    ("read", "pread into new c10-allocator memory, 4 MiB per allocation, nothing else"),
    ("read-crc", "... plus CRC-32 of each 4 MiB"),
    ("ckpt-eager", "ckpt `load_file` (eager)"),
    ("thp-read-crc", "read-crc into 2 MiB-aligned memory with `MADV_HUGEPAGE`"),
    ("map-crc", "map the file as `memory_map` does, CRC-32 over every byte (no copy, no new memory)"),
]

NAME = re.compile(r"^(A|B)-(save|warm|cold|wsave|wload|whash|wheaders)-(.+)-(\d+)\.proc\.json$")
STARTUP = re.compile(r"^startup-(\w+)-(\d+)\.proc\.json$")


def load_json(path):
    with open(path) as f:
        return json.load(f)


def merged(results, stem):
    """The process totals of one run, with the program's own measurements over them."""
    record = load_json(os.path.join(results, stem + ".proc.json"))
    own = os.path.join(results, stem + ".json")
    if os.path.exists(own):
        record.update(load_json(own))
    return record


class Runs:
    def __init__(self, results):
        self.results = results
        self.info = load_json(os.path.join(results, "run.json"))
        self.ops = defaultdict(list)      # (case, phase, who) -> [record, ...] in round order
        self.startup = defaultdict(list)  # who -> [record, ...]
        for name in sorted(os.listdir(results), key=lambda n: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", n)]):
            match = NAME.match(name)
            if match:
                case, phase, who, _ = match.groups()
                self.ops[(case, phase, who)].append(merged(results, name[: -len(".proc.json")]))
                continue
            match = STARTUP.match(name)
            if match:
                self.startup[match.group(1)].append(merged(results, name[: -len(".proc.json")]))

    def total_waited(self):
        return sum(r.get("waited_s") or 0 for records in list(self.ops.values()) + list(self.startup.values())
                   for r in records)

    def cases(self):
        return [c for c in ("A", "B") if any(key[0] == c for key in self.ops)]

    def get(self, case, phase, who):
        return self.ops.get((case, phase, who), [])

    def single(self, stem):
        path = os.path.join(self.results, stem + ".proc.json")
        return merged(self.results, stem) if os.path.exists(path) else None

    def text(self, name):
        path = os.path.join(self.results, name)
        if not os.path.exists(path):
            return None
        with open(path) as f:
            return f.read()


# --- metrics of one run ---------------------------------------------------------------------

def wall(r):
    return r["wall_s"] if "wall_s" in r else r["process_wall_s"]


def cpu(r):
    if "user_s" in r:
        return r["user_s"] + r["sys_s"]
    return r["process_user_s"] + r["process_sys_s"]


def peak_kib(r):
    return r.get("peak_rss_kib", r["process_maxrss_kib"])


def growth_kib(r):
    return r["peak_rss_kib"] - r["rss_before_kib"] if "rss_before_kib" in r else None


def touch_wall(r):
    return r.get("touch_wall_s")


def touch_cpu(r):
    return r["touch_user_s"] + r["touch_sys_s"] if "touch_user_s" in r else None


def cpu_split(records):
    """Median CPU as "total (user + sys)"."""
    total = median([cpu(r) for r in records])
    if total is None:
        return "-"
    if "user_s" in records[0]:
        user, system = median([r["user_s"] for r in records]), median([r["sys_s"] for r in records])
    else:
        user, system = median([r["process_user_s"] for r in records]), median([r["process_sys_s"] for r in records])
    return f"{secs(total)} ({secs(user)} + {secs(system)})"


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def spread(values):
    values = [v for v in values if v is not None]
    return (min(values), max(values)) if values else (None, None)


# --- formatting --------------------------------------------------------------------------------

def secs(value):
    if value is None:
        return "-"
    if value >= 10:
        return f"{value:.1f} s"
    if value >= 0.1:
        return f"{value:.3f} s"
    if value >= 0.001:
        return f"{value * 1000:.1f} ms"
    return f"{value * 1e6:.0f} µs"


def span_text(values):
    low, high = spread(values)
    return "-" if low is None else f"{secs(low)} – {secs(high)}"


def mib(kib):
    return "-" if kib is None else f"{kib / 1024:,.0f} MiB"


def signed_mib(kib):
    return "-" if kib is None else f"{kib / 1024:+,.0f} MiB"


def ratio(value):
    if value is None:
        return "-"
    if value < 0.1:
        return f"{value:.4f}x ({value * 100:.2f}%)"
    return f"{value:.2f}x"


def verdict(ok):
    return "-" if ok is None else ("**pass**" if ok else "**miss**")


def rate(nbytes, seconds):
    return "-" if not nbytes or not seconds else f"{nbytes / MIB / seconds:,.0f} MiB/s"


def other_load(records):
    values = [r.get("other_cpu_cores") for r in records if r.get("other_cpu_cores") is not None]
    if not values:
        return "unknown"
    return f"median {statistics.median(values):.2f}, max {max(values):.2f} cores"


# --- tables ------------------------------------------------------------------------------------

def save_table(runs, case):
    lines = [
        "| save | wall (median) | min – max | throughput | CPU (user + sys) | peak RSS | peak − RSS before | "
        "process wall | what it does |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    everything = []
    for who, label, what in SAVERS:
        records = runs.get(case, "save", who)
        if not records:
            continue
        everything += records
        walls = [wall(r) for r in records]
        nbytes = median([r.get("file_bytes") for r in records])
        if nbytes is None and who == "dd":
            nbytes = median([r.get("file_bytes") for r in runs.get(case, "save", "ckpt")])
        lines.append(
            f"| {label} | **{secs(median(walls))}** | {span_text(walls)} | {rate(nbytes, median(walls))} | "
            f"{cpu_split(records)} | {mib(median([peak_kib(r) for r in records]))} | "
            f"{signed_mib(median([growth_kib(r) for r in records]))} | "
            f"{secs(median([r['process_wall_s'] for r in records]))} | {what} |")
    return lines, everything


def load_table(runs, case, phase):
    lines = [
        "| load | wall (median) | min – max | CPU (user + sys) | page faults (minor / major) | peak RSS | "
        "peak − RSS before | then sum all tensors | process wall | notes |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    everything = []
    for who, label, what in LOADERS:
        touch = who.endswith(":touch")
        records = runs.get(case, phase, who.split(":")[0])
        if not records:
            continue
        if touch:
            walls = [touch_wall(r) for r in records]
            faults = f"{median([r.get('touch_minflt') for r in records]):,.0f} / " \
                     f"{median([r.get('touch_majflt') for r in records]):,.0f}" if "touch_minflt" in records[0] else "-"
            lines.append(
                f"| {label} | **{secs(median(walls))}** | {span_text(walls)} | "
                f"{secs(median([touch_cpu(r) for r in records]))} | {faults} | "
                f"{mib(median([r.get('peak_rss_after_touch_kib') for r in records]))} | "
                f"{signed_mib(median([r['peak_rss_after_touch_kib'] - r['rss_before_kib'] for r in records]))} | "
                f"- | - | {what} |")
            continue
        everything += records
        walls = [wall(r) for r in records]
        faults = f"{median([r.get('minflt') for r in records]):,.0f} / {median([r.get('majflt') for r in records]):,.0f}" \
            if "minflt" in records[0] else "-"
        sums = [touch_wall(r) for r in records]
        lines.append(
            f"| {label} | **{secs(median(walls))}** | {span_text(walls)} | {cpu_split(records)} | "
            f"{faults} | {mib(median([peak_kib(r) for r in records]))} | "
            f"{signed_mib(median([growth_kib(r) for r in records]))} | "
            f"{secs(median(sums)) if who != 'ckpt-mmap' else 'next row'} | "
            f"{secs(median([r['process_wall_s'] for r in records]))} | {what} |")
    return lines, everything


def cache_check(runs, case):
    """(least resident bytes of a .pth file at the start of a warm load, most at a cold one)."""
    warm, cold = [], []
    for (c, phase, _), records in runs.ops.items():
        if c != case or phase not in ("warm", "cold"):
            continue
        for r in records:
            for path, resident in (r.get("resident") or {}).items():
                if resident is None or not path.endswith(".pth"):
                    continue
                (warm if phase == "warm" else cold).append((path, resident))
    warm_min = min((res for _, res in warm), default=None)
    cold_max = max((res for _, res in cold), default=None)
    return warm_min, cold_max


def per_round_ratios(a_records, b_records, metric=wall):
    """metric(a) / metric(b) round by round (the contenders alternate within a round)."""
    return [metric(a) / metric(b) for a, b in zip(a_records, b_records) if metric(b)]


def ratio_range(values):
    low, high = spread(values)
    return "-" if low is None else f"{low:.2f}x – {high:.2f}x" if low >= 0.1 else f"{low * 100:.2f}% – {high * 100:.2f}%"


# --- targets -----------------------------------------------------------------------------------

def targets(runs):
    """Rows: (target, case, measured, ratio, best of rounds, per round, cold, verdict)."""
    rows = []

    def med(case, phase, who, metric=wall):
        return median([metric(r) for r in runs.get(case, phase, who)])

    def compare(target, case, phase, num_who, den_who, limit, at_most, metric=wall, cold=True):
        """The ratio metric(num) / metric(den) of medians, judged against `limit`."""
        num, den = runs.get(case, phase, num_who), runs.get(case, phase, den_who)
        if not (num and den):
            return
        value = med(case, phase, num_who, metric) / med(case, phase, den_who, metric)
        best = min(metric(r) for r in num) / min(metric(r) for r in den)
        rounds = per_round_ratios(num, den, metric)
        ok = value <= limit if at_most else value >= limit
        flag = verdict(ok)
        if rounds and min(rounds) <= limit <= max(rounds):
            flag += " (rounds on both sides)"
        cold_text = "-"
        if cold and runs.get(case, "cold", num_who) and runs.get(case, "cold", den_who):
            cold_value = med(case, "cold", num_who, metric) / med(case, "cold", den_who, metric)
            cold_text = f"{ratio(cold_value)} {verdict(cold_value <= limit if at_most else cold_value >= limit)}"
        measured = f"{secs(med(case, phase, num_who, metric))} / {secs(med(case, phase, den_who, metric))}"
        rows.append((target, case, measured, ratio(value), ratio(best), ratio_range(rounds), cold_text, flag))

    compare(f"durable save ≤ {SAVE_VS_DD}x `dd conv=fsync` (ckpt / dd)", "A", "save", "ckpt", "dd", SAVE_VS_DD, True,
            cold=False)
    compare(f"... the same in the what-if rounds (ckpt / dd)", "A", "wsave", "ckpt", "dd", SAVE_VS_DD, True, cold=False)
    for case in runs.cases():
        compare(f"save CPU time ≤ {SAVE_CPU_VS_PYTHON}x Python's (ckpt / Python)", case, "save", "ckpt", "python",
                SAVE_CPU_VS_PYTHON, True, metric=cpu, cold=False)
    for case in runs.cases():
        records = runs.get(case, "save", "ckpt")
        if records:
            growths = [growth_kib(r) for r in records]
            worst = max(growths)
            rows.append(("save peak RSS ≤ state + 64 MiB (peak − RSS before, the state in memory)", case,
                         f"median {signed_mib(median(growths))}", signed_mib(worst) + " (max)", "-", "-", "-",
                         verdict(worst * 1024 <= SAVE_RSS_OVER_STATE)))
    compare(f"eager load ≥ {LOAD_VS_PYTHON:g}x faster than `torch.load` (torch.load / ckpt)", "A", "warm", "python",
            "ckpt-eager", LOAD_VS_PYTHON, False)
    compare(f"eager load ≥ {LOAD_VS_PICKLE:g}x faster than `pickle_load` (pickle_load / ckpt)", "A", "warm", "pickle",
            "ckpt-eager", LOAD_VS_PICKLE, False)
    compare(f"memory-mapped load ≤ {MMAP_VS_PYTHON:.0%} of `torch.load`'s time (ckpt / torch.load)", "A", "warm",
            "ckpt-mmap", "python", MMAP_VS_PYTHON, True)
    compare(f"save ≥ {SMALL_VS_PYTHON:g}x faster than Python's (Python / ckpt)", "B", "save", "python", "ckpt",
            SMALL_VS_PYTHON, False, cold=False)
    compare(f"eager load ≥ {SMALL_VS_PYTHON:g}x faster than `torch.load` (torch.load / ckpt)", "B", "warm", "python",
            "ckpt-eager", SMALL_VS_PYTHON, False)
    return rows


def noise_note(runs):
    """How much the same case-A save varied in this run, and why the best of rounds is shown."""
    ck = runs.get("A", "save", "ckpt")
    if len(ck) < 2:
        return []
    sys_times = [r["sys_s"] for r in ck]
    dd_sys = [r["process_sys_s"] for r in runs.get("A", "save", "dd")]
    others = [r.get("other_cpu_cores") or 0 for r in ck + runs.get("A", "save", "dd")]
    low, high = min(sys_times), max(sys_times)
    if high < 1.5 * low:
        return []
    text = (f"Case A's saves were noisy in this run: the same `save_file` of the same bytes spent {secs(low)} to "
            f"{secs(high)} in the kernel (system time), ")
    if dd_sys:
        text += f"dd {secs(min(dd_sys))} to {secs(max(dd_sys))}, "
    text += (f"while the rest of the machine used at most {max(others):.2f} cores. The extra time is the kernel's "
             "copy into the page cache running slower (the CPU profile's `copy_folio_from_iter_atomic`), not "
             "the disk, and no process of this machine. Most likely it is the host: this virtual machine reports "
             "the memory it frees to the host (`page_reporting` on the kernel command line), and touching such "
             "memory again stalls on a host fault; it could not be reproduced on demand. It strikes whichever "
             "process allocates at the wrong moment, so medians of a few rounds can still differ by it; the "
             "\"best of rounds\" "
             "column (fastest against fastest) and the what-if rounds, which ran without `pickle_save`'s 3 GiB "
             "in between, show the costs without it.")
    return [text, ""]


# --- diagnostics -------------------------------------------------------------------------------

STRACE_CALL = re.compile(r"^\d+\s+(\w+)\((.*)\)\s+=\s+(-?\d+).*<([\d.]+)>$")


def strace_phases(text):
    """Writes (count, bytes, seconds) and fsyncs (seconds each) from `strace -f -T` output."""
    writes = [0, 0, 0.0]
    fsyncs = []
    for line in text.splitlines():
        match = STRACE_CALL.match(line.strip())
        if not match:
            continue
        call, _, result, seconds = match.groups()
        if call in ("write", "pwrite64") and int(result) > 0:
            writes[0] += 1
            writes[1] += int(result)
            writes[2] += float(seconds)
        elif call in ("fsync", "fdatasync"):
            fsyncs.append(float(seconds))
    return writes, fsyncs


def strace_table(runs, case):
    lines = [
        "| save (one run under strace) | wall | write calls | mean write | time in write calls | "
        "data fsync | wall − fsyncs |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    found = False
    for who, label, _ in SAVERS:
        text = runs.text(f"{case}-strace-{who}.log")
        record = runs.single(f"{case}-strace-{who}")
        if text is None or record is None:
            continue
        found = True
        (count, nbytes, write_s), fsyncs = strace_phases(text)
        total = wall(record)
        lines.append(f"| {label} | {secs(total)} | {count:,} | {nbytes / max(count, 1) / 1024:,.0f} KiB | "
                     f"{secs(write_s)} | {secs(max(fsyncs) if fsyncs else None)} | {secs(total - sum(fsyncs))} |")
    return lines if found else []


def whatif_tables(runs):
    lines = []
    saves = {who: runs.get("A", "wsave", who) for who, _ in WHATIF_SAVES}
    if not any(saves.values()):
        return lines, {}
    dd = median([wall(r) for r in saves["dd"]]) if saves["dd"] else None
    lines += [
        "| case A save variant | wall (median) | min – max | before the fsync | fsync | CPU user+sys | vs dd |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    medians = {}
    for who, label in WHATIF_SAVES:
        records = saves.get(who) or []
        if not records:
            continue
        w = median([wall(r) for r in records])
        medians[who] = {"wall": w, "cpu": median([cpu(r) for r in records]),
                        "write": median([r.get("write_wall_s") for r in records]),
                        "fsync": median([r.get("fsync_wall_s") for r in records])}
        lines.append(f"| {label} | **{secs(w)}** | {span_text([wall(r) for r in records])} | "
                     f"{secs(medians[who]['write'])} | {secs(medians[who]['fsync'])} | {secs(medians[who]['cpu'])} | "
                     f"{ratio(w / dd) if dd else '-'} |")
    hashes = runs.get("A", "whash", "hash")
    if hashes:
        medians["xxh3"] = median([r["xxh3_user_s"] + r["xxh3_sys_s"] for r in hashes])
        medians["crc32"] = median([r["crc32_user_s"] + r["crc32_sys_s"] for r in hashes])
        lines += ["", f"Hashing 1 GiB in memory, no I/O (median of {len(hashes)}): XXH3-128 "
                  f"{secs(medians['xxh3'])} of CPU ({GIB / MIB / medians['xxh3']:,.0f} MiB/s), CRC-32 (libdeflate) "
                  f"{secs(medians['crc32'])} ({GIB / MIB / medians['crc32']:,.0f} MiB/s)."]
    loads = {who: runs.get("A", "wload", who) for who, _ in WHATIF_LOADS}
    if any(loads.values()):
        eager = median([wall(r) for r in loads["ckpt-eager"]]) if loads["ckpt-eager"] else None
        lines += [
            "",
            "| case A load variant (warm cache) | wall (median) | min – max | CPU user+sys | system CPU | "
            "minor page faults | vs ckpt eager |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for who, label in WHATIF_LOADS:
            records = loads.get(who) or []
            if not records:
                continue
            w = median([wall(r) for r in records])
            medians["load-" + who] = {"wall": w, "cpu": median([cpu(r) for r in records]),
                                      "sys": median([r.get("sys_s") for r in records]),
                                      "minflt": median([r.get("minflt") for r in records])}
            lines.append(f"| {label} | **{secs(w)}** | {span_text([wall(r) for r in records])} | "
                         f"{secs(medians['load-' + who]['cpu'])} | {secs(medians['load-' + who]['sys'])} | "
                         f"{medians['load-' + who]['minflt']:,.0f} | {ratio(w / eager) if eager else '-'} |")
    headers = {who: runs.get("A", "wheaders", who) for who, _ in WHATIF_HEADERS}
    if any(headers.values()):
        count = next(r["headers"] for records in headers.values() for r in records)
        lines += [
            "",
            f"| case A, cold: reading the {count} zip local headers | wall (median) | min – max | "
            "file in the page cache afterwards |",
            "|---|---:|---:|---:|",
        ]
        for who, label in WHATIF_HEADERS:
            records = headers.get(who) or []
            if not records:
                continue
            w = median([r["wall_s"] for r in records])
            after = median([r["resident_after"] for r in records])
            medians["headers-" + who] = {"wall": w, "resident_after": after, "file_bytes": records[0]["file_bytes"]}
            lines.append(f"| {label} | **{secs(w)}** | {span_text([r['wall_s'] for r in records])} | "
                         f"{after / MIB:,.1f} MiB of {records[0]['file_bytes'] / MIB:,.0f} MiB |")
    return lines, medians


def perf_block(runs, name, kind, limit):
    text = runs.text(f"{name}.perf.{kind}.txt")
    if not text:
        return []
    out = []
    for line in text.splitlines():
        line = re.sub(r"(\s+-)+\s*$", "", line.rstrip())  # perf's empty columns
        if re.search(r"\] (_start|main|__libc_start\w*|\(anonymous namespace\)::run|ckpt::load_file)( \(inlined\))?$",
                     line):
            continue  # the frames every sample passes through
        line = re.sub(r"\s{3,}", "  ", line)
        if len(line) > 150:
            line = line[:147] + "..."
        out.append(line)
        if len(out) >= limit:
            break
    return ["```", *out, "```"]


# --- the section ---------------------------------------------------------------------------------

def section(results):
    runs = Runs(results)
    info = runs.info
    lines = [
        "## Serialization: ckpt's format against dd, Python and libtorch",
        "",
        f"Run {info.get('started', '?')} to {info.get('finished', '?')}, by `bench/run_format_benchmarks.sh` "
        f"(called by `bench/run_benchmarks.sh`; `bash bench/run_benchmarks.sh --only format` runs just this part). "
        "Two states, each a dict of float32 tensors filled with uniform noise:",
        "",
    ]
    for case in runs.cases():
        lines.append(f"- **case {case}**: {CASES[case]}.")
    lines += [
        "",
        "Every measured operation runs in a process of its own (`bench/format_bench.cpp` for ckpt, "
        "`bench/pickle_bench.cpp` for libtorch's `torch::pickle_save`/`pickle_load`, "
        "`bench/python_format_bench.py` for Python's `torch.save`/`torch.load`, and `dd`/`cat`), so a "
        "process's peak RSS is that operation's. **Wall** and **CPU** are the operation's own: a steady clock "
        "and `getrusage(RUSAGE_SELF)` (user + system, all threads) read just before and after the call, "
        "inside the process; the process's start-up (table below) and the building of the state are not "
        "in them. For `dd` and `cat` they are the whole process's (`wait4`), exec included (~1 ms). "
        "**Peak RSS** is the process's `ru_maxrss` after the operation; **peak − RSS before** subtracts "
        "the resident set just before the call (for a save, that includes the state itself). "
        "`bench/timed_run.py` spawns each process and also records the process's totals (**process wall**) "
        "and how busy the rest of the machine was meanwhile.",
        "",
        f"{info.get('rounds', '?')} rounds; in each, every contender runs once, in an order shuffled anew each "
        "round (seeded by the round's number), so that drift in the shared disk's speed, and what one process "
        "leaves behind for the next, reach all alike. Tables give medians over the rounds and "
        "the range. Before each operation the runner samples the machine's load for a second (which also lets "
        "the previous process's aftermath settle) and waits up to "
        f"{info.get('quiet_wait_s', 0):.0f} s for the rest of the machine to use at most "
        f"{info.get('max_busy_cores', 0):g} cores (at most {info.get('quiet_budget_s', 0):.0f} s in all; it waited "
        f"{runs.total_waited():.0f} s); each table says how busy the machine was during its runs. Files are "
        "written under the build tree on the machine's disk, each save replacing its own file (deleted before "
        "the save; not timed).",
        "",
        "Warm loads read files that are fully in the page cache (each load's file is read once more, untimed, "
        "just before it; the `fincore` check of what was resident is in each result file). Cold loads first drop that file's pages with "
        "`posix_fadvise(POSIX_FADV_DONTNEED)` (checked: nothing resident when the load starts); the "
        "programs' own binaries stay cached. `/proc/sys/vm/drop_caches` would also work here (root), but "
        "would empty the page cache of everyone sharing the machine.",
        "",
    ]
    # Start-up.
    if runs.startup:
        lines += ["| process start-up (not in the times below) | wall (median) | min – max |", "|---|---:|---:|"]
        labels = {"ckpt": "`format_bench startup`: links ckpt and libtorch, does nothing",
                  "pickle": "`pickle_bench startup`: links libtorch, does nothing",
                  "python": "`python3 python_format_bench.py startup`: `import torch`"}
        for who in ("ckpt", "pickle", "python"):
            records = runs.startup.get(who)
            if records:
                walls = [r["process_wall_s"] for r in records]
                lines.append(f"| {labels[who]} | {secs(median(walls))} | {span_text(walls)} |")
        lines.append("")

    # Targets first: the point of the benchmark.
    rows = targets(runs)
    if rows:
        lines += [
            "### Targets",
            "",
            "Ratios of medians from this run, judged as the targets ask; \"best of rounds\" divides the fastest run "
            "of one by the fastest of the other, and \"per round\" is the ratio within each round (the contenders "
            "ran within seconds of each other). Loads are judged with a warm page cache; the cold-cache ratio is "
            "shown beside.",
            "",
            "| target | case | measured (medians) | ratio | best of rounds | per round | cold cache | |",
            "|---|---|---|---:|---:|---:|---:|---|",
        ]
        for row in rows:
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
        lines += noise_note(runs)

    for case in runs.cases():
        lines += [f"### Case {case}: {CASES[case]}", ""]
        table, records = save_table(runs, case)
        lines += ["**Saves** (durable unless said otherwise):", ""] + table + [
            "", f"Rest of the machine during these saves: {other_load(records)}.", ""]
        for phase, title in (("warm", "warm page cache"), ("cold", "cold page cache")):
            if not any(runs.get(case, phase, who.split(':')[0]) for who, _, _ in LOADERS):
                continue
            table, records = load_table(runs, case, phase)
            warm_min, cold_max = cache_check(runs, case)
            check = ""
            if phase == "warm" and warm_min is not None:
                check = f" Least of a file resident at the start of a warm load: {warm_min / MIB:,.1f} MiB."
            if phase == "cold" and cold_max is not None:
                check = f" Most of a file resident at the start of a cold load: {cold_max / MIB:,.1f} MiB."
            lines += [f"**Loads, {title}:**", ""] + table + [
                "", f"Rest of the machine during these loads: {other_load(records)}.{check} \"then sum all "
                "tensors\" is the time to sum every element after the load returned: arithmetic over memory "
                "already filled, except after a memory-mapped load, where it is what faults the pages in.", ""]

    lines += diagnostics(runs)
    return lines


def diagnostics(runs):
    lines = ["### Where the time goes", ""]
    for case in runs.cases():
        table = strace_table(runs, case)
        if table:
            lines += [f"Case {case}, one more save of each kind under `strace -f -T` (not among the timed runs; "
                      "strace adds a little to each call): how the bytes were written and how long the final "
                      "fsync took. \"wall − fsyncs\" is the work before the data reaches the disk: serializing, "
                      "hashing and copying into the page cache.", ""] + table + [""]
    whatif, m = whatif_tables(runs)
    if whatif:
        lines += [
            "**What bounds case A** (`bench/format_whatif.cpp`, alternating with ckpt's own runs and dd; "
            f"medians of {runs.info.get('whatif_rounds', '?')} rounds): "
            "each variant does one thing ckpt's save or eager load does, on the same bytes, with the same "
            "libraries (XXH3-128 from libxxhash, CRC-32 from libdeflate) and allocator, and nothing else.",
            "",
        ] + whatif + [""]
        lines += findings(runs, m)
    for name, title, kind, limit in (
            ("A-perf-save", "ckpt `save_file`, case A", "self", 14),
            ("A-perf-eager", "ckpt `load_file` eager, case A (warm)", "self", 14),
            ("B-perf-eager", "ckpt `load_file` eager, case B (warm)", "children", 30),
            ("B-perf-mmap", "ckpt `load_file` memory-mapped, case B (warm)", "children", 24)):
        block = perf_block(runs, name, kind, limit)
        if block:
            what = "self time by DSO and symbol" if kind == "self" else "time including callees"
            lines += [f"CPU profile of {title}: `perf record -e cpu-clock --call-graph dwarf`, cut to the "
                      f"operation's window; {what}, top entries:", ""] + block + [""]
    return lines


def perf_children(runs, name):
    """{symbol: percent of samples including callees} from a children profile."""
    text = runs.text(f"{name}.perf.children.txt") or ""
    shares = {}
    for line in text.splitlines():
        match = re.match(r"\s*([\d.]+)%\s+[\d.]+%\s+\[.\]\s+(.*?)\s*$", line)
        if match:
            shares.setdefault(match.group(2), float(match.group(1)))
    return shares


def share(shares, pattern):
    """The largest share among symbols matching `pattern` (a regex), or None."""
    found = [v for k, v in shares.items() if re.search(pattern, k)]
    return max(found) if found else None


def findings(runs, m):
    """What the measurements say about each target, in numbers from this run."""
    out = ["**What bounds each result:**", ""]

    def get(who, key="wall"):
        return (m.get(who) or {}).get(key)

    def med(case, phase, who, metric=wall):
        return median([metric(r) for r in runs.get(case, phase, who)])

    hashing = (m.get("xxh3") or 0) + (m.get("crc32") or 0)

    # (a) durable save against dd.
    save_a, dd_a = med("A", "save", "ckpt"), med("A", "save", "dd")
    if save_a and dd_a:
        best = min(wall(r) for r in runs.get("A", "save", "ckpt")) / min(wall(r) for r in runs.get("A", "save", "dd"))
        text = f"- **Save vs dd (case A: {ratio(save_a / dd_a)} of medians, {ratio(best)} best of rounds"
        if get("ckpt") and get("dd"):
            text += f", {ratio(get('ckpt') / get('dd'))} in the what-if rounds"
        text += ").** "
        ck_log, dd_log = runs.text("A-strace-ckpt.log"), runs.text("A-strace-dd.log")
        if ck_log and dd_log:
            (_, _, _), ck_fs = strace_phases(ck_log)
            (_, _, _), dd_fs = strace_phases(dd_log)
            text += (f"In the traced runs the final fsync took {secs(max(ck_fs))} for ckpt and {secs(max(dd_fs))} for "
                     "dd: all of the file is written back at that fsync, none before (1 GiB of dirty pages is below "
                     "the kernel's writeback thresholds), so a save's time is its CPU work before the fsync plus the "
                     "disk's time after it, one after the other. ")
        dd, plain, hashed, copy, ckpt, overlap = (get(k) for k in ("dd", "plain", "hash", "hash-copy", "ckpt", "hash-overlap"))
        if dd and plain and hashed:
            text += (f"The what-ifs: writing the tensors straight from memory takes {secs(plain)} ({ratio(plain / dd)} "
                     f"dd), hashing each chunk first (XXH3-128 + CRC-32: {secs(hashing)} of CPU per GiB) {secs(hashed)} "
                     f"({ratio(hashed / dd)})")
            if copy:
                text += f", plus the copy of every other chunk into the temp file's buffer {secs(copy)} ({ratio(copy / dd)})"
            if ckpt:
                text += f"; ckpt's `save_file` in the same rounds {secs(ckpt)} ({ratio(ckpt / dd)})"
            text += ". "
            if overlap:
                text += (f"Starting the writeback of each 8 MiB while the next is hashed (`sync_file_range`) took "
                         f"{secs(overlap)} ({ratio(overlap / dd)} dd), its final fsync {secs(get('hash-overlap', 'fsync'))} "
                         f"instead of {secs(get('hash', 'fsync'))}: the hashing then costs nothing in wall time.")
        out.append(text)

    # (b) CPU time of a save.
    for case in runs.cases():
        ck, py = runs.get(case, "save", "ckpt"), runs.get(case, "save", "python")
        if not (ck and py):
            continue
        ck_cpu, py_cpu = median([cpu(r) for r in ck]), median([cpu(r) for r in py])
        best = min(cpu(r) for r in ck) / min(cpu(r) for r in py)
        text = (f"- **Save CPU (case {case}: {ratio(ck_cpu / py_cpu)} of Python's, {ratio(best)} best of rounds).** "
                f"Medians: ckpt {cpu_split(ck)}, Python {cpu_split(py)} (user + system).")
        ck_sys = min(r["sys_s"] for r in ck)  # the least of the rounds: the copy without the machine's noise
        target = py_cpu * SAVE_CPU_VS_PYTHON
        text += (f" ckpt's system time is the kernel copying the bytes into the page cache (and the file system's "
                 f"bookkeeping); its user time is encoding the state, the XXH3-128 and CRC-32 ({secs(hashing)} per "
                 "GiB in memory, see below) and the copy into the temp file's buffer. ")
        if ck_sys >= target:
            text += (f"{SAVE_CPU_VS_PYTHON}x Python's is {secs(target)}, below ckpt's system time alone "
                     f"(the least of the rounds: {secs(ck_sys)}): out of reach for any save that writes through the page cache, however "
                     "little it does in user space.")
        else:
            budget = target - ck_sys
            text += (f"{SAVE_CPU_VS_PYTHON}x Python's is {secs(target)}; after ckpt's system time (the least of "
                     f"the rounds: {secs(ck_sys)}) "
                     f"that leaves {secs(budget)} for everything done in user space")
            if case == "A" and hashing:
                text += (f", against {secs(hashing)} for the two hashes alone: a single-pass XXH3-128 + CRC-32 "
                         "save cannot meet it, whatever else it saves")
            text += "."
        out.append(text)

    # (c) eager load against torch.load and pickle_load.
    eager, python, pickle = med("A", "warm", "ckpt-eager"), med("A", "warm", "python"), med("A", "warm", "pickle")
    read, read_crc, mapped = (get("load-" + k) for k in ("read", "read-crc", "map-crc"))
    if eager and python:
        text = (f"- **Eager load (case A: torch.load / ckpt = {ratio(python / eager)}"
                + (f", pickle_load / ckpt = {ratio(pickle / eager)}" if pickle else "") + ").** ")
        if read:
            text += (f"Only reading the file into newly allocated memory (`read`) takes {secs(read)}, "
                     f"{secs(get('load-read', 'sys'))} of it system time: {get('load-read', 'minflt'):,.0f} page "
                     "faults, one per 4 KiB page of the new tensors, each zeroing its page before the copy "
                     f"overwrites it. With the CRC-32s, {secs(read_crc)}; ckpt, in the same rounds, "
                     f"{secs(get('load-ckpt-eager'))}. `torch.load` fills new memory the same way (its page faults "
                     f"are in the tables) and checks nothing. ")
            if python / LOAD_VS_PYTHON < read:
                text += (f"{LOAD_VS_PYTHON:g}x faster than it would be {secs(python / LOAD_VS_PYTHON)}: below the "
                         "`read` floor, so out of reach for any loader that copies into new memory. ")
        if pickle:
            text += (f"`pickle_load` is slower because it needs the whole file in one buffer first and then copies "
                     f"every record out of it (3 copies of the data, see its page faults and peak RSS); "
                     f"{LOAD_VS_PICKLE:g}x faster than it would be {secs(pickle / LOAD_VS_PICKLE)}"
                     + (", also below the `read` floor. " if read and pickle / LOAD_VS_PICKLE < read else ". "))
        if get("load-thp-read-crc"):
            text += (f"Transparent huge pages do not help on this machine (`thp-read-crc`: {secs(get('load-thp-read-crc'))}, "
                     f"{get('load-thp-read-crc', 'minflt'):,.0f} faults, each zeroing 2 MiB). ")
        if mapped:
            text += (f"What does: mapping the file as `memory_map` does and checking every byte's CRC-32 "
                     f"(`map-crc`) takes {secs(mapped)}, {ratio(mapped / eager)} of the eager load's time and "
                     f"{ratio(python / mapped)} faster than `torch.load`: the tensors' pages are the page cache's, "
                     "mapped copy-on-write; nothing is zeroed or copied.")
        out.append(text)

    # (d) memory-mapped load, cold.
    cold_map = runs.get("A", "cold", "ckpt-mmap")
    if cold_map and runs.get("A", "cold", "python"):
        majflt = median([r.get("majflt") for r in cold_map])
        w = median([wall(r) for r in cold_map])
        text = (f"- **Memory-mapped load, cold cache (case A: {secs(w)}, {ratio(w / med('A', 'cold', 'python'))} of "
                f"torch.load's).** It waits for {majflt:,.0f} major page faults, about one per record: the reader "
                "reads each record's 30-byte local header (`ZipReader::data_offset`, to find where its data "
                "starts) through the mapping, and the kernel reads around each faulting page (read-ahead, see "
                "the Machine table).")
        touch, willneed, pread = (m.get("headers-" + k) for k in ("touch", "willneed", "pread"))
        if touch:
            text += (f" Reading just those headers that way, cold, takes {secs(touch['wall'])} and leaves "
                     f"{touch['resident_after'] / MIB:,.0f} MiB of the {touch['file_bytes'] / MIB:,.0f} MiB file in "
                     "the page cache: the whole file is read to return a structure")
            if willneed or pread:
                text += ("; " + " and ".join(
                    f"{name} {secs(v['wall'])} ({v['resident_after'] / MIB:,.1f} MiB read)"
                    for name, v in (("`MADV_WILLNEED` first", willneed), ("`pread`", pread)) if v))
            text += "."
        out.append(text)

    # (e) case B loads.
    eager_b, python_b, mmap_b = med("B", "warm", "ckpt-eager"), med("B", "warm", "python"), med("B", "warm", "ckpt-mmap")
    if eager_b and python_b:
        text = (f"- **Case B load ({ratio(python_b / eager_b)} faster than torch.load).** "
                f"{SMALL_VS_PYTHON:g}x would be {secs(python_b / SMALL_VS_PYTHON)}.")
        if mmap_b:
            text += (f" The memory-mapped load, which reads no tensor data at all, already takes {secs(mmap_b)}: "
                     "20,000 tensors' worth of structure (the zip directory, the pickle, the tensors' views) is "
                     "what bounds it, not the 80 MiB.")
        shares = perf_children(runs, "B-perf-mmap")
        parts = [(pattern, label) for pattern, label in (
            (r"^ckpt::format::read_layout$", "`read_layout` (zip directory + pickle into a Value tree)"),
            (r"^ckpt::format::PickleReader::load$", "`PickleReader::load`"),
            (r"PickleReader::container|_Hashtable<ckpt::format::Value const\*, std::pair<ckpt::format::Value const\* const, ckpt::format::PickleReader::ContainerState",
             "the nesting guard's map (`PickleReader::container`/`adopt`)"),
            (r"^ckpt::format::PickleReader::~PickleReader", "freeing the reader"),
            (r"_Sp_counted_ptr_inplace<ckpt::format::Value.*_M_dispose", "freeing the Value tree"),
            (r"introsort_loop<.*StorageInfo", "sorting the storages by offset (a string-keyed map lookup per comparison)"),
            (r"Decoder::convert", "building the IValues"),
            (r"^_int_malloc$", "malloc"),
        ) if share(shares, pattern) is not None]
        if parts:
            text += (" Where its CPU goes (memory-mapped load, samples including callees): "
                     + "; ".join(f"{label} {share(shares, pattern):.0f}%" for pattern, label in parts) + ".")
        out.append(text)
    return out + [""]
