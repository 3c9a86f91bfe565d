"""timed_run.py: run one command as a child process and record what it cost.

  timed_run.py --json-out FILE [--wait-quiet SECONDS [--max-busy CORES] [--quiet-budget FILE]] [--evict PATH]...
               [--resident PATH]... [--stdout-null] [--stderr FILE] -- COMMAND [ARG...]

Written for bench/run_format_benchmarks.sh, which runs every measured operation of the
serialization benchmark through it. It records, as one JSON object:

- process_wall_s: from just before the child is spawned to its exit (perf_counter), so
  it includes the child's start-up (about a millisecond for dd or cat, most of a second
  for a program that links libtorch);
- process_user_s, process_sys_s, process_maxrss_kib: the child's own rusage from wait4()
  (microsecond CPU times, unlike /usr/bin/time's 10 ms);
- other_cpu_cores: the CPU time the rest of the machine used while the child ran (busy
  time of all CPUs from /proc/stat minus the child's own), divided by the wall time:
  0.0 on an idle machine, 2.0 when another job kept both cores of this one busy. Kernel
  threads count as "other" (writeback, for instance);
- loadavg_1m: the 1-minute load average when the child started;
- resident, resident_after: for each --resident PATH, the bytes of it in the page cache
  just before the child started and after it exited (mincore via util-linux fincore): a
  warm or cold cache, and how much of the file the child made the kernel read.

--wait-quiet SECONDS waits (up to SECONDS) until the rest of the machine uses at most
--max-busy cores (default 0.3), sampled over one second, so that a measurement does not
start in the middle of someone else's build; the wait and the last sample are recorded
(waited_s, busy_before_cores). With --quiet-budget FILE, the waits of all the runs that
share FILE add up to at most the seconds FILE holds (it is decremented), so a machine
that stays busy delays a whole benchmark by a bounded time.

--evict PATH drops PATH's clean pages from the page cache first (posix_fadvise
POSIX_FADV_DONTNEED: only that file's pages, unlike /proc/sys/vm/drop_caches, which
would empty the cache of everyone sharing the machine). Standard library only.
"""

import argparse
import json
import os
import subprocess
import sys
import time


def busy_seconds():
    """Busy CPU time of the whole machine, all CPUs, in seconds (from /proc/stat)."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal guest guest_nice: guest time is
    # already inside user, idle and iowait are not busy.
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def loadavg_1m():
    with open("/proc/loadavg") as loadavg:
        return float(loadavg.read().split()[0])


def busy_cores(interval=1.0):
    """Average busy CPUs of the whole machine over `interval` seconds."""
    start, t0 = busy_seconds(), time.perf_counter()
    time.sleep(interval)
    return (busy_seconds() - start) / (time.perf_counter() - t0)


def wait_quiet(max_wait, max_busy):
    """Waits until the machine is quiet or max_wait seconds have passed (one sample at least).

    Returns (seconds spent beyond the first sample, the last sample)."""
    start = time.perf_counter()
    busy = busy_cores()
    first = time.perf_counter() - start
    while busy > max_busy and time.perf_counter() - start - first < max_wait:
        time.sleep(4.0)
        busy = busy_cores()
    return time.perf_counter() - start - first, busy


def evict(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def resident_bytes(path):
    try:
        out = subprocess.run(["fincore", "--bytes", "--noheadings", "--raw", "--output", "RES", path],
                             capture_output=True, text=True, check=True).stdout.split()
        return int(out[0])
    except (OSError, subprocess.CalledProcessError, IndexError, ValueError):
        return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json-out", required=True)
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS")
    parser.add_argument("--max-busy", type=float, default=0.3, metavar="CORES")
    parser.add_argument("--quiet-budget", metavar="FILE")
    parser.add_argument("--evict", action="append", default=[])
    parser.add_argument("--resident", action="append", default=[])
    parser.add_argument("--stdout-null", action="store_true", help="the child's stdout goes to /dev/null")
    parser.add_argument("--stderr", help="the child's stderr goes to this file")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command")

    max_wait = args.wait_quiet
    if args.quiet_budget:
        try:
            with open(args.quiet_budget) as budget:
                max_wait = min(max_wait, max(0.0, float(budget.read().strip() or 0)))
        except FileNotFoundError:
            max_wait = 0.0
    # Always one sample when asked to wait (it also lets the previous run's aftermath, such as
    # freed memory and writeback, settle for a second); more only within the budget.
    waited, busy_before = wait_quiet(max_wait, args.max_busy) if args.wait_quiet > 0 else (0.0, None)
    if args.quiet_budget and waited > 0:
        with open(args.quiet_budget) as budget:
            left = float(budget.read().strip() or 0) - waited
        with open(args.quiet_budget, "w") as budget:
            budget.write(f"{max(0.0, left):.1f}\n")
    for path in args.evict:
        evict(path)
    resident = {path: resident_bytes(path) for path in args.resident}
    stdout = subprocess.DEVNULL if args.stdout_null else None
    stderr = open(args.stderr, "w") if args.stderr else None
    load = loadavg_1m()
    busy_start = busy_seconds()
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=stdout, stderr=stderr)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    busy = busy_seconds() - busy_start
    child.returncode = os.waitstatus_to_exitcode(status)
    if stderr:
        stderr.close()

    own = usage.ru_utime + usage.ru_stime
    result = {
        "command": command,
        "exit_code": child.returncode,
        "process_wall_s": wall,
        "process_user_s": usage.ru_utime,
        "process_sys_s": usage.ru_stime,
        "process_maxrss_kib": usage.ru_maxrss,
        # /proc/stat counts in 10 ms ticks: small negative values are rounding.
        "other_cpu_cores": max(0.0, busy - own) / wall if wall > 0 else 0.0,
        "loadavg_1m": load,
        "waited_s": waited,
        "busy_before_cores": busy_before,
        "resident": resident,
        "resident_after": {path: resident_bytes(path) for path in args.resident},
    }
    with open(args.json_out, "w") as out:
        json.dump(result, out)
        out.write("\n")
    if child.returncode != 0:
        sys.exit(f"timed_run: {' '.join(command)} exited with {child.returncode}")


if __name__ == "__main__":
    main()
