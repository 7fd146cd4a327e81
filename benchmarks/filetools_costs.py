"""Measure the user-mode instructions GNU find, grep and gzip spend, on the inputs the workloads use, with valgrind.

The workloads `find`, `grep` and `gzip` charge their user compute with the figures
this prints (FIND_PER_ENTRY, SCAN_PER_BYTE, MATCH_PER_LINE, PER_FILE, GZIP_PER_BYTE,
GUNZIP_PER_BYTE). Each is the
difference of two `valgrind --tool=cachegrind --cache-sim=no` instruction counts
("I refs") of the real program on trees written to the host by
`apkern.workloads.tree.write_host_tree`, so start-up and the dynamic linker cancel:

- FIND_PER_ENTRY: `find TREE > FILE` on trees of 2,000 and 1,000 entries, per entry;
- SCAN_PER_BYTE: `grep -r -F NOMATCH TREE > FILE` on one tree at SIZE_PERCENT 100 and
  50 (the same entries, different file sizes), per byte;
- MATCH_PER_LINE: `grep -r -F inode TREE` minus `grep -r -F NOMATCH TREE` (same
  length, never occurs) on the SIZE_PERCENT 100 tree, per line printed;
- PER_FILE: `grep -r -F NOMATCH TREE` on trees of 2,000 and 1,000 entries of one-line
  files (SIZE_PERCENT 0), per file;
- GZIP_PER_BYTE: `gzip -c` of tree.text(4,000,000, 1) and of its first 2,000,000 bytes, per
  input byte; GUNZIP_PER_BYTE: `gzip -dc` of the two outputs, per output byte.

Run: PYTHONPATH=src .venv/bin/python benchmarks/filetools_costs.py  (needs find, grep and valgrind)
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile

from apkern.workloads import tree

NOMATCH = "inodx"  # five letters, as the default pattern; in no word of the vocabulary
PATTERN = "inode"


def irefs(argv: list[str], out: str) -> int:
    """valgrind's count of the instructions `argv` executes, its standard output going to `out`."""
    with open(out, "wb") as f:
        r = subprocess.run(
            ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null", *argv],
            stdout=f,
            stderr=subprocess.PIPE,
            check=False,
        )
    m = re.search(rb"I\s+refs:\s+([\d,]+)", r.stderr)
    if m is None:
        raise RuntimeError(r.stderr.decode(errors="replace"))
    return int(m.group(1).replace(b",", b""))


def host_tree(base: str, name: str, entries: int, size_percent: int) -> tuple[str, int, int]:
    """(root, files, bytes) of a tree written under base/name."""
    d = os.path.join(base, name)
    os.mkdir(d)
    root = tree.write_host_tree(d, entries, 1, size_percent)
    files = nbytes = 0
    for dirpath, _dirs, names in os.walk(root):
        for n in names:
            files += 1
            nbytes += os.path.getsize(os.path.join(dirpath, n))
    return root, files, nbytes


def main() -> None:
    with tempfile.TemporaryDirectory() as base:
        out = os.path.join(base, "out")
        small, f1, _ = host_tree(base, "small", 1000, 0)
        big, f2, _ = host_tree(base, "big", 2000, 0)
        full, _, b100 = host_tree(base, "full", 2000, 100)
        half, _, b50 = host_tree(base, "half", 2000, 50)

        per_entry = (irefs(["find", big], out) - irefs(["find", small], out)) / 1000
        print(f"FIND_PER_ENTRY  {per_entry:8.1f}  (find, 2000 - 1000 entries)")

        grep = ["grep", "-r", "-F"]
        scan = (irefs([*grep, NOMATCH, full], out) - irefs([*grep, NOMATCH, half], out)) / (b100 - b50)
        print(f"SCAN_PER_BYTE   {scan:8.3f}  (grep -r -F {NOMATCH}, {b100} - {b50} bytes)")

        with_match = irefs([*grep, PATTERN, full], out)
        with open(out, "rb") as f:
            lines = f.read().count(b"\n")
        per_line = (with_match - irefs([*grep, NOMATCH, full], out)) / lines
        print(f"MATCH_PER_LINE  {per_line:8.1f}  (grep -r -F {PATTERN}: {lines} lines printed)")

        per_file = (irefs([*grep, NOMATCH, big], out) - irefs([*grep, NOMATCH, small], out)) / (f2 - f1)
        print(f"PER_FILE        {per_file:8.1f}  (grep -r -F {NOMATCH}, {f2} - {f1} one-line files)")
        big_text, small_text = os.path.join(base, "t4.txt"), os.path.join(base, "t2.txt")
        data = tree.text(4_000_000, 1)
        for path, part in ((big_text, data), (small_text, data[:2_000_000])):
            with open(path, "wb") as f:
                f.write(part)
        gz = (irefs(["gzip", "-c", big_text], out) - irefs(["gzip", "-c", small_text], out)) / 2_000_000
        print(f"GZIP_PER_BYTE   {gz:8.1f}  (gzip -c, 4,000,000 - 2,000,000 bytes)")
        irefs(["gzip", "-c", big_text], big_text + ".gz")
        irefs(["gzip", "-c", small_text], small_text + ".gz")
        gunzip = (irefs(["gzip", "-dc", big_text + ".gz"], out) - irefs(["gzip", "-dc", small_text + ".gz"], out)) / 2e6
        print(f"GUNZIP_PER_BYTE {gunzip:8.1f}  (gzip -dc of those, per byte out)")
        for prog in (["find", "--version"], ["grep", "--version"], ["gzip", "--version"], ["valgrind", "--version"]):
            print(subprocess.run(prog, capture_output=True, text=True, check=False).stdout.splitlines()[0])


if __name__ == "__main__":
    main()
