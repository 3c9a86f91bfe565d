"""whatif_headers.py: how a memory-mapped load should read the zip local headers.

A memory-mapped load reads only structure: the central directory, data.pkl, and each
record's 30-byte local header (to find where its data starts). Through the mapping, each
header read of a cold file is a page fault, and the kernel reads around a faulting
page (read_ahead_kb, 8 MiB on some machines): reading 259 headers can read the whole
file. This reads the local headers of a ckpt file the ways a loader could, cold, and
reports the time and how much of the file ended up in the page cache:

  whatif_headers.py FILE --variant touch|willneed|pread --json-out OUT

  touch     a byte of each header through a MAP_PRIVATE mapping (what ckpt does now)
  willneed  madvise(MADV_WILLNEED) of each header's page first (the kernel reads them in
            parallel, no read-around), then the same touches
  pread     pread() of each header from the file descriptor

The header offsets come from Python's zipfile (not timed). The file's pages are dropped
first (posix_fadvise DONTNEED). Standard library only.
"""

import argparse
import json
import mmap
import os
import subprocess
import time
import zipfile


def resident(path):
    out = subprocess.run(["fincore", "--bytes", "--noheadings", "--raw", "--output", "RES", path],
                         capture_output=True, text=True, check=True).stdout.split()
    return int(out[0])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file")
    parser.add_argument("--variant", choices=["touch", "willneed", "pread"], required=True)
    parser.add_argument("--json-out", required=True)
    args = parser.parse_args()

    with zipfile.ZipFile(args.file) as archive:
        offsets = [info.header_offset for info in archive.infolist()]
    fd = os.open(args.file, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    before = resident(args.file)
    mapping = None
    if args.variant != "pread":
        mapping = mmap.mmap(fd, 0, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    start = time.perf_counter()
    total = 0
    if args.variant == "pread":
        for offset in offsets:
            total += os.pread(fd, 30, offset)[26]
    else:
        if args.variant == "willneed":
            for offset in offsets:
                mapping.madvise(mmap.MADV_WILLNEED, offset - offset % mmap.PAGESIZE, mmap.PAGESIZE)
        for offset in offsets:
            total += mapping[offset + 26]
    elapsed = time.perf_counter() - start
    after = resident(args.file)
    with open(args.json_out, "w") as out:
        json.dump({"tool": "whatif-headers", "variant": args.variant, "headers": len(offsets), "wall_s": elapsed,
                   "resident_before": before, "resident_after": after, "file_bytes": os.path.getsize(args.file)},
                  out)
        out.write("\n")


if __name__ == "__main__":
    main()
