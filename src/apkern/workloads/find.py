"""find: walk a directory tree with getdents and stat, print every path.

`find [-q] [-verify MANIFEST] ROOT` prints ROOT and every path below it, depth
first, each directory's entries in the order getdents gives them (as GNU find's
fts does), through a 4096-byte stdio buffer (`stdio.Output`). A directory is
opened, read with getdents into libc's staging buffer (7,936 bytes; GNU find asks
for 32,768, which makes no difference for directories of fewer than about 300
entries: one call that returns them and one that returns nothing, as the trace
shows) and closed before its entries are visited; every entry is stat'ed. Today's
GNU find takes an entry's type from getdents and stats only what it descends into
(the trace below: 109 newfstatat for 792 entries); the issue asks for a stat per
entry, as a find that tests more than the type (-size, -newer, -ls) makes.

`-q` prints no paths; `-verify MANIFEST` compares the walk with the manifest mktree
wrote (the number of entries and the CRC-32 of the sorted `KIND SIZE PATH` lines)
and prints the verdict on standard error; a mismatch is exit status 1.

User compute is charged per entry at FIND_PER_ENTRY instructions: the user-mode
instructions GNU find 4.9.0 spends per entry, measured with valgrind on the same
tree written to the host (`benchmarks/filetools_costs.py`: the difference in
`valgrind --tool=cachegrind --cache-sim=no find TREE > FILE` instruction counts
between trees of 2,000 and 1,000 entries, over 1,000 entries: 1,521.1). It covers fts's
bookkeeping, building the path and the stdio call that prints it; the copy into the
buffer is charged again by its `WriteMem` (a word per instruction, a few words).

Trace of today's find, for the call pattern (`strace -f -o T find /usr/include/linux
> FILE`, Debian 12, GNU find 4.9.0): 792 entries, 58 getdents64 of 32,768 bytes,
67 openat, 109 newfstatat; to a pipe, writes of 4,096 bytes.
"""

from __future__ import annotations

import stat as statmod
from collections.abc import Callable, Generator
from typing import Any

from ..hw.ops import Op
from ..userland import libc
from . import tree
from .stdio import BUFSIZ, Output

Gen = Generator[Op, Any, Any]
Visit = Callable[[str, int, int], Gen]
OnError = Callable[[str, OSError], Gen]

FIND_PER_ENTRY = 1521  # measured: see the module's docstring
CHECK_PER_BYTE = 2  # the check: CRC-32 of a listing line (zlib's sliced table loop: about 1.5 per byte)
CHECK_PER_COMPARE = 30  # the check: one strcmp of two listing lines while qsort sorts them


def join(d: str, name: str) -> str:
    return d + name if d.endswith("/") else f"{d}/{name}"


def walk(root: str, visit: Visit, on_error: OnError) -> Gen:
    """Stat `root`, `visit(path, mode, size)` it and, depth first, everything below it."""
    try:
        mode, size = yield from libc.stat(root)
    except OSError as e:
        yield from on_error(root, e)
        return
    yield from visit(root, mode, size)
    if statmod.S_ISDIR(mode):
        yield from _walk_dir(root, visit, on_error)


def _walk_dir(d: str, visit: Visit, on_error: OnError) -> Gen:
    names: list[str] = []
    try:
        fd = yield from libc.open(d)
        try:
            while batch := (yield from libc.getdents(fd, libc.STAGING_SIZE)):
                names += [name for name, _kind in batch]
        finally:
            yield from libc.close(fd)
    except OSError as e:
        yield from on_error(d, e)
        return
    for name in names:
        path = join(d, name)
        try:
            mode, size = yield from libc.stat(path)
        except OSError as e:
            yield from on_error(path, e)
            continue
        yield from visit(path, mode, size)
        if statmod.S_ISDIR(mode):
            yield from _walk_dir(path, visit, on_error)


def check_listing(listing: list[bytes], want: dict[str, Any]) -> Gen:
    """(entries, checksum, agrees) of a walk's listing lines against a parsed manifest; charged."""
    n = len(listing)
    yield from libc.compute(CHECK_PER_COMPARE * n * max(1, n.bit_length()))
    yield from libc.compute(CHECK_PER_BYTE * sum(map(len, listing)))
    crc = tree.listing_checksum(listing)
    return n, crc, n == want["entries"] and crc == want["checksum"]


def _usage() -> Gen:
    yield from libc.write_bytes(2, b"usage: find [-q] [-verify MANIFEST] ROOT\n")
    return 2


def find(argv: list[str]) -> Gen:
    """Print every path below ROOT; with -verify, check the walk against mktree's manifest."""
    args, quiet, manifest = argv[1:], False, None
    while args and args[0].startswith("-"):
        if args[0] == "-q":
            quiet, args = True, args[1:]
        elif args[0] == "-verify" and len(args) > 1:
            manifest, args = args[1], args[2:]
        else:
            return (yield from _usage())
    if len(args) != 1:
        return (yield from _usage())
    root = args[0]
    want = None
    if manifest is not None:
        try:
            want = yield from tree.read_manifest(manifest)
        except (OSError, ValueError) as e:
            yield from libc.write_bytes(2, f"find: {manifest}: {getattr(e, 'strerror', None) or e}\n".encode())
            return 2
    out = Output(1, (yield from libc.mmap(BUFSIZ)))
    listing: list[bytes] = []
    status = 0

    def visit(path: str, mode: int, size: int) -> Gen:
        yield from libc.compute(FIND_PER_ENTRY)
        if not quiet:
            yield from out.put(path.encode() + b"\n")
        if want is not None:
            is_dir = statmod.S_ISDIR(mode)
            listing.append(tree.listing_line(is_dir, 0 if is_dir else size, path))

    def on_error(path: str, e: OSError) -> Gen:
        nonlocal status
        status = 1
        yield from out.flush()
        yield from libc.write_bytes(2, f"find: {path}: {e.strerror}\n".encode())

    yield from walk(root, visit, on_error)
    yield from out.flush()
    if want is not None:
        n, crc, ok = yield from check_listing(listing, want)
        yield from libc.write_bytes(2, f"find: {n} entries, checksum {crc}: manifest agrees {ok}\n".encode())
        status = status or (0 if ok else 1)
    return status
