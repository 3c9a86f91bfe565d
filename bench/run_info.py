"""run_info.py: the run.json of one benchmark part: when, which commit, on what machine.

  run_info.py start OUT --root DIR --build DIR --data DIR [KEY=VALUE...]   a new run.json
  run_info.py finish OUT                                                   add "finished"

KEY=VALUE pairs are the part's settings (numbers stay numbers). Standard library only.
"""

import datetime
import json
import os
import platform
import re
import subprocess
import sys


def now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def run(*command):
    try:
        return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def first_line(path, prefix):
    with open(path) as f:
        return next((line.split(":", 1)[1].strip() for line in f if line.startswith(prefix)), "unknown")


def machine(build, data):
    device, fs_type = (run("df", "-T", data).splitlines()[1:] or ["unknown unknown"])[0].split()[:2]
    read_ahead = "unknown"
    block = os.path.join("/sys/class/block", os.path.basename(device))
    for candidate in (block, os.path.dirname(os.path.realpath(block))):
        path = os.path.join(candidate, "queue", "read_ahead_kb")
        if os.path.exists(path):
            with open(path) as f:
                read_ahead = f.read().strip() + " KiB"
            break
    cache = {}
    with open(os.path.join(build, "CMakeCache.txt")) as f:
        for line in f:
            match = re.match(r"([A-Za-z_]+):[A-Z]+=(.*)", line.strip())
            if match:
                cache[match.group(1)] = match.group(2)
    return {
        "nproc": run("nproc"),
        "cpu": first_line("/proc/cpuinfo", "model name"),
        "memory": first_line("/proc/meminfo", "MemTotal:"),
        "kernel": run("uname", "-r"),
        "file_system": f"{fs_type} on {device}, read-ahead {read_ahead}",
        "build": cache.get("CMAKE_BUILD_TYPE", "unknown") + ", "
        + run(cache.get("CMAKE_CXX_COMPILER", "c++"), "--version").splitlines()[0],
        "python": f"{sys.executable} {platform.python_version()}",
    }


def main():
    command, out = sys.argv[1:3]
    if command == "finish":
        with open(out) as f:
            info = json.load(f)
        info["finished"] = now()
    else:
        args, settings, rest = {}, [], sys.argv[3:]
        while rest:
            if rest[0].startswith("--"):
                args[rest[0]], rest = rest[1], rest[2:]
            else:
                settings.append(rest[0].split("=", 1))
                rest = rest[1:]
        root = args["--root"]
        commit = run("git", "-C", root, "rev-parse", "--short", "HEAD")
        if run("git", "-C", root, "status", "--porcelain", "--untracked-files=no"):
            commit += " with uncommitted changes"
        info = {"started": now(), "commit": commit, "machine": machine(args["--build"], args["--data"])}
        for key, value in settings:
            number = re.fullmatch(r"-?\d+(\.\d+)?", value)
            info[key] = (float(value) if number.group(1) else int(value)) if number else value
    with open(out, "w") as f:
        json.dump(info, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
