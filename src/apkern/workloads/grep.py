"""grep: read files (or standard input) in blocks, print the lines that contain a fixed string.

`grep [-r] [-verify MANIFEST] PATTERN [PATH...]` searches each PATH (with -r,
every file below a directory PATH, found by the same walk as find's: getdents and a
stat per entry), or standard input when there is none. It reads BLOCK bytes at a
time into a buffer of its own (GNU grep 3.8 asks for 98,304 bytes a read: the
trace below), searches the block for the string, and for each hit prints the whole
line (after `PATH:` when there are several files or -r) through a 4096-byte stdio
buffer, then goes on after that line, as GNU grep's buffer search does; the tail
of a block after its last newline waits for the next block. Exit status 0 when a
line matched, 1 when none did, 2 after an error.

`-verify MANIFEST` checks the result with mktree's manifest, whose counts the tree's
generator kept while it wrote the lines (not by searching): for `grep -r PATTERN
ROOT`, the lines that matched and the bytes read must be the manifest's for that
word; for `find ROOT | grep PATTERN`, the lines read must be the tree's entries and
those that matched the paths holding the word. The verdict goes to standard
error; a mismatch is exit status 2. PATTERN must be a word of the manifest.

User compute, measured with valgrind's instruction count of GNU grep 3.8 on the
same tree written to the host (`benchmarks/filetools_costs.py`, fixed-string search
`grep -r -F`, output to a file):
- SCAN_PER_BYTE per byte read: grep on two trees that differ only in file sizes
  (SIZE_PERCENT 100 and 50), a pattern of five letters that does not occur;
  the `ReadMem` that brings a block into the program already counts a quarter of
  an instruction per byte (the scan's loads), the rest is charged as compute;
- MATCH_PER_LINE per line printed: the same tree with PATTERN_DEFAULT, minus the
  scan, over the lines it printed (finding the line's ends, the prefix, fwrite);
- PER_FILE per file searched: trees of 2,000 and 1,000 entries with files of one
  line (SIZE_PERCENT 0), over the files between them (fts, open, fstat, close,
  the per-file set-up of the search).
"""

from __future__ import annotations

import stat as statmod
from collections.abc import Generator
from typing import Any

from ..hw.ops import Op
from ..userland import libc
from . import tree
from .find import walk
from .stdio import BUFSIZ, Output

Gen = Generator[Op, Any, Any]

BLOCK = 98304  # bytes a read asks for (`strace -f -o T grep -r needle_zz /usr/include/linux > FILE`)
SCAN_PER_BYTE = 0.656  # measured (benchmarks/filetools_costs.py): 27,051,332 - 13,522,311 bytes
MATCH_PER_LINE = 2438  # measured: 25,526 lines printed
PER_FILE = 1726  # measured: 1,834 - 917 files
READMEM_PER_BYTE = 0.25  # what the block's ReadMem already charged
COUNT_PER_BYTE = 0.125  # the check's line count on standard input: SSE2 memchr, 16 bytes in two instructions
PATTERN_DEFAULT = "inode"


def scan(text: bytes, pattern: bytes) -> list[tuple[int, int]]:
    """(start, end) of every line of `text` (whole lines, each ending in a newline) that contains `pattern`."""
    out = []
    pos = 0
    while pos < len(text) and (hit := text.find(pattern, pos)) >= 0:
        start = text.rfind(b"\n", pos, hit) + 1 or pos
        end = text.find(b"\n", hit) + 1
        out.append((start, end))
        pos = end
    return out


class _Search:
    def __init__(self, pattern: bytes, out: Output, buf: int, prefix: bool) -> None:
        self.pattern, self.out, self.buf, self.prefix = pattern, out, buf, prefix
        self.matched = self.nbytes = self.lines = 0

    def fd(self, fd: int, label: str, count_lines: bool = False) -> Gen:
        """Search everything `fd` gives until end of file."""
        residue = b""
        lead = f"{label}:".encode() if self.prefix else b""
        while True:
            n = yield from libc.read(fd, self.buf, BLOCK)
            if n == 0:
                break
            data = residue + (yield from libc.read_mem(self.buf, n))
            yield from libc.compute(max(0, round((SCAN_PER_BYTE - READMEM_PER_BYTE) * n)))
            cut = data.rfind(b"\n") + 1
            residue = data[cut:]
            yield from self._lines(data[:cut], lead, count_lines)
            self.nbytes += n
        if residue:  # a last line with no newline: printed with one, as grep does
            yield from self._lines(residue + b"\n", lead, count_lines)

    def _lines(self, text: bytes, lead: bytes, count_lines: bool) -> Gen:
        hits = scan(text, self.pattern)
        yield from libc.compute(MATCH_PER_LINE * len(hits))
        for s, e in hits:
            yield from self.out.put(lead + text[s:e])
        self.matched += len(hits)
        if count_lines:
            yield from libc.compute(round(COUNT_PER_BYTE * len(text)))
            self.lines += text.count(b"\n")


def _usage() -> Gen:
    yield from libc.write_bytes(2, b"usage: grep [-r] [-verify MANIFEST] PATTERN [PATH...]\n")
    return 2


def grep(argv: list[str]) -> Gen:
    """Print the lines of each PATH (or standard input) that contain PATTERN."""
    args, recursive, manifest = argv[1:], False, None
    while args and args[0].startswith("-") and args[0] != "-":
        if args[0] == "-r":
            recursive, args = True, args[1:]
        elif args[0] == "-verify" and len(args) > 1:
            manifest, args = args[1], args[2:]
        else:
            return (yield from _usage())
    if not args:
        return (yield from _usage())
    pattern, paths = args[0], args[1:]
    want = None
    if manifest is not None:
        try:
            want = yield from tree.read_manifest(manifest)
        except (OSError, ValueError) as e:
            yield from libc.write_bytes(2, f"grep: {manifest}: {getattr(e, 'strerror', None) or e}\n".encode())
            return 2
        if pattern not in want["words"] or (paths and not (recursive and len(paths) == 1)):
            yield from libc.write_bytes(2, b"grep: -verify wants a word of the manifest and one tree (or stdin)\n")
            return 2
    region = yield from libc.mmap(BLOCK + BUFSIZ)
    out = Output(1, region + BLOCK)
    search = _Search(pattern.encode(), out, region, prefix=recursive or len(paths) > 1)
    errors = False

    def on_error(path: str, e: OSError) -> Gen:
        nonlocal errors
        errors = True
        yield from out.flush()
        yield from libc.write_bytes(2, f"grep: {path}: {e.strerror}\n".encode())

    def visit(path: str, mode: int, size: int) -> Gen:
        if statmod.S_ISDIR(mode):
            if not recursive:
                yield from on_error(path, IsADirectoryError(21, "Is a directory"))
            return
        yield from libc.compute(PER_FILE)
        try:
            fd = yield from libc.open(path)
        except OSError as e:
            yield from on_error(path, e)
            return
        try:
            yield from search.fd(fd, path)
        finally:
            yield from libc.close(fd)

    if not paths:
        yield from search.fd(0, "(standard input)", count_lines=want is not None)
    for path in paths:
        if recursive:
            yield from walk(path, visit, on_error)
        else:
            try:
                mode, size = yield from libc.stat(path)
            except OSError as e:
                yield from on_error(path, e)
                continue
            yield from visit(path, mode, size)
    yield from out.flush()
    status = 2 if errors else 0 if search.matched else 1
    if want is not None:
        lines, paths_with = want["words"][pattern]
        if paths:
            ok = search.matched == lines and search.nbytes == want["bytes"]
            what = f"{search.nbytes} bytes"
        else:
            ok = search.matched == paths_with and search.lines == want["entries"]
            what = f"{search.lines} lines"
        verdict = f"grep: {search.matched} lines matched in {what}: manifest agrees {ok}\n"
        yield from libc.write_bytes(2, verdict.encode())
        if not ok:
            status = 2
    return status
