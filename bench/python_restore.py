"""python_restore.py: the Python baseline for bench/restore_bench.cpp.

A resume's load as Python does it: torch.load(file) (the State first) and then
model.load_state_dict(state["model"]) (copied into the parameters), on the file
`restore_bench setup` wrote, into the same module (8 torch.nn.Linear(N * 8, 4096), its
memory touched first, as a trained model's is). Records the operation's wall and CPU
time, page faults, the RSS before it and the process's peak RSS, as restore_bench does.

Run it with the Debian interpreter that has torch: /usr/bin/python3.
"""

import argparse
import json
import os
import resource
import time

import torch


def rss_kib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", required=True)
    parser.add_argument("--state-mib", type=int, default=1024)
    parser.add_argument("--json-out")
    args = parser.parse_args()
    path = os.path.join(args.dir, "checkpoint_epoch_1.pth")
    layers = [torch.nn.utils.skip_init(torch.nn.Linear, args.state_mib * 8, 4096) for _ in range(8)]
    model = torch.nn.Sequential(*layers)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.fill_(0.5)
    rss_before = rss_kib()
    usage_before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    state = torch.load(path)
    model.load_state_dict(state["model"])
    wall = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    del state
    size = os.path.getsize(path)
    print(f"python_restore: {size / (1 << 20):.1f} MiB in {wall:.3f} s (user {usage.ru_utime - usage_before.ru_utime:.3f}, "
          f"sys {usage.ru_stime - usage_before.ru_stime:.3f}), peak RSS {usage.ru_maxrss / 1024:.0f} MiB, "
          f"{(usage.ru_maxrss - rss_before) / 1024:.0f} MiB above the RSS before")
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"side": "python", "torch": torch.__version__, "state_bytes": size, "wall_s": wall,
                       "user_s": usage.ru_utime - usage_before.ru_utime,
                       "sys_s": usage.ru_stime - usage_before.ru_stime,
                       "minflt": usage.ru_minflt - usage_before.ru_minflt,
                       "majflt": usage.ru_majflt - usage_before.ru_majflt,
                       "rss_before_kib": rss_before, "maxrss_before_kib": usage_before.ru_maxrss,
                       "peak_rss_kib": usage.ru_maxrss, "loadavg_1min": os.getloadavg()[0]}, f)
            f.write("\n")


if __name__ == "__main__":
    main()
