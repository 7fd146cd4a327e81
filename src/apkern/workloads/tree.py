"""The directory tree that find and grep walk, generated from a seed, and its manifest.

`mktree ROOT ENTRIES [SEED [SIZE_PERCENT]]` makes ENTRIES entries (directories and
text files) below ROOT with mkdir, open, write and close, and writes the manifest
ROOT.manifest that find's and grep's `-verify` compare their results with.

The tree's shape copies /usr/include on the machine this was written on (Debian 12,
measured with os.walk, 2024): 8,731 entries below the root, 820 of them
directories; 10.7 entries per directory on average; file sizes log-normal with
ln(size) of mean 8.59 and deviation 1.44 (median 5.4 KB, mean 14.5 KB); names of
11.2 characters on average. Every entry picks its directory uniformly among those
made before it, so a directory holds 1/DIR_SHARE entries on average (paths are
deeper than there: 6.1 levels on average for 2,000 entries, against 4.6).
SIZE_PERCENT scales every file size (100: as measured; smaller trees keep tests
quick).

File contents are lines of C-like words from VOCABULARY drawn with Zipf weights
(1/rank), a line of 2 to 9 words (34 bytes on average; the first 400 headers of
/usr/include average 37: 7,417,666 bytes in 201,451 lines). Each file
is lines drawn from a pool of POOL_LINES lines, so that making a large tree is
cheap for the host.

The manifest is text: a header `entries N dirs D files F bytes B checksum C` where
C is the CRC-32 of the sorted lines `KIND SIZE PATH` of every path find prints
(ROOT included; KIND d or f, a directory's size 0), then one line per vocabulary word
`word W lines L paths P`: L lines of the tree's files and P of those paths contain
W. These counts come from the generator's own bookkeeping (per pool line), not from
searching the files, so they check grep independently.
"""

from __future__ import annotations

import os
import random
import zlib
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from ..hw.ops import Op
from ..userland import libc

Gen = Generator[Op, Any, Any]

DIR_SHARE = 820 / 8731  # directories among the entries of /usr/include
SIZE_LOG_MEAN = 8.59  # ln(bytes) of its files: mean and deviation
SIZE_LOG_SD = 1.44
SIZE_MAX = 1 << 20  # the largest file /usr/include holds is 0.9 MB; a cap keeps the tail in reach
POOL_LINES = 4096
_WORDS = (
    "int struct static return define include void unsigned const char long if else for while sizeof "
    "typedef extern inline switch case break buffer count offset length error table entry queue lock "
    "page file inode device driver signal thread process memory kernel user flags state index value "
    "result pointer list node hash size data addr mask bits block cache timer event irq cpu task sched"
)
VOCABULARY = tuple(_WORDS.split())  # by rank: the Zipf weight of a word is 1/rank
EXTENSIONS = (".h", ".h", ".h", ".c", ".txt")  # mostly headers, as in /usr/include

# Instruction costs of mktree (set-up, not measured by any figure; estimates):
MKTREE_PER_ENTRY = 200  # format the name (snprintf) and walk the plan
MKTREE_PER_LINE = 12  # pick a pool line (a random step and an index) for memcpy into the buffer


@dataclass(frozen=True)
class Entry:
    path: str
    is_dir: bool
    lines: tuple[int, ...] = ()  # a file's lines, as indices into the pool

    def size(self, pool: list[bytes]) -> int:
        return sum(len(pool[i]) for i in self.lines)


def pool(seed: int) -> list[bytes]:
    """The lines files are made of (each ends with a newline)."""
    rng = random.Random(f"pool {seed}")
    weights = [1 / (rank + 1) for rank in range(len(VOCABULARY))]
    out = []
    for _ in range(POOL_LINES):
        words = rng.choices(VOCABULARY, weights, k=rng.randint(2, 9))
        indent = "\t" * rng.randint(0, 2)
        out.append(f"{indent}{' '.join(words)};\n".encode())
    return out


def plan(root: str, entries: int, seed: int, size_percent: int = 100) -> list[Entry]:
    """The tree's entries in the order mktree makes them (every directory before what it holds)."""
    rng = random.Random(f"tree {seed}")
    lines = pool(seed)
    mean_line = sum(map(len, lines)) / len(lines)
    dirs = [root]
    out = []
    for i in range(entries):
        parent = dirs[rng.randrange(len(dirs))]
        word = VOCABULARY[rng.randrange(len(VOCABULARY))]
        if rng.random() < DIR_SHARE:
            path = f"{parent}/{word}{i}"
            dirs.append(path)
            out.append(Entry(path, True))
            continue
        size = min(SIZE_MAX, rng.lognormvariate(SIZE_LOG_MEAN, SIZE_LOG_SD)) * size_percent / 100
        n = max(1, round(size / mean_line))
        ext = EXTENSIONS[rng.randrange(len(EXTENSIONS))]
        pick = random.Random(f"lines {seed} {i}")  # its own stream: SIZE_PERCENT changes sizes, not the tree
        out.append(Entry(f"{parent}/{word}_{i}{ext}", False, tuple(pick.randrange(POOL_LINES) for _ in range(n))))
    return out


def content(e: Entry, lines: list[bytes]) -> bytes:
    return b"".join(lines[i] for i in e.lines)


def listing_line(is_dir: bool, size: int, path: str) -> bytes:
    """One line of what the manifest's checksum covers."""
    return f"{'d' if is_dir else 'f'} {size} {path}\n".encode()


def listing_checksum(lines: list[bytes]) -> int:
    """The CRC-32 of the sorted listing lines."""
    crc = 0
    for line in sorted(lines):
        crc = zlib.crc32(line, crc)
    return crc


def manifest(root: str, entries: int, seed: int, size_percent: int = 100) -> bytes:
    """The manifest of the tree `plan` describes (see the module's docstring)."""
    lines = pool(seed)
    es = plan(root, entries, seed, size_percent)
    listing = [listing_line(True, 0, root)] + [listing_line(e.is_dir, e.size(lines), e.path) for e in es]
    files = [e for e in es if not e.is_dir]
    nbytes = sum(e.size(lines) for e in files)
    uses = [0] * POOL_LINES  # how many times each pool line appears in the tree
    for e in files:
        for i in e.lines:
            uses[i] += 1
    paths = [root] + [e.path for e in es]
    out = [
        f"entries {len(es) + 1} dirs {len(es) + 1 - len(files)} files {len(files)} bytes {nbytes} "
        f"checksum {listing_checksum(listing)}\n"
    ]
    for w in VOCABULARY:
        raw = w.encode()
        n_lines = sum(uses[i] for i, line in enumerate(lines) if raw in line)
        n_paths = sum(1 for p in paths if w in p)
        out.append(f"word {w} lines {n_lines} paths {n_paths}\n")
    return "".join(out).encode()


def manifest_path(root: str) -> str:
    return root.rstrip("/") + ".manifest"


def parse_manifest(data: bytes) -> dict[str, Any]:
    """{'entries': N, ..., 'checksum': C, 'words': {W: (lines, paths)}}; ValueError if it is not one."""
    text = data.decode()
    head, *rest = text.splitlines()
    f = head.split()
    if len(f) != 10 or f[0::2] != ["entries", "dirs", "files", "bytes", "checksum"]:
        raise ValueError("not a manifest")
    out: dict[str, Any] = {k: int(v) for k, v in zip(f[0::2], f[1::2], strict=True)}
    words = {}
    for line in rest:
        g = line.split()
        if len(g) != 6 or g[0] != "word":
            raise ValueError("not a manifest")
        words[g[1]] = (int(g[3]), int(g[5]))
    out["words"] = words
    return out


def read_manifest(path: str) -> Gen:
    """The parsed manifest at `path` (read with open and read); OSError or ValueError if it is missing or bad."""
    fd = yield from libc.open(path)
    data = b""
    try:
        while chunk := (yield from libc.read_bytes(fd, libc.STAGING_SIZE)):
            data += chunk
    finally:
        yield from libc.close(fd)
    yield from libc.compute(2 * len(data))  # sscanf over the text
    return parse_manifest(data)


def populate(fs: Any, root: str, entries: int, seed: int, size_percent: int = 100) -> None:
    """Write the same tree and manifest straight into a file system (tests and benchmarks; mktree makes it by calls)."""
    lines = pool(seed)
    for e in plan(root, entries, seed, size_percent):
        if e.is_dir:
            fs.mkdir(e.path)
        else:
            fs.write_file(e.path, content(e, lines))
    fs.write_file(manifest_path(root), manifest(root, entries, seed, size_percent))


def write_host_tree(directory: str, entries: int, seed: int, size_percent: int = 100) -> str:
    """Make the tree on the host under `directory` (for measuring real find and grep on it); return its root."""
    root = os.path.join(directory, "tree")
    lines = pool(seed)
    os.makedirs(root)
    for e in plan(root, entries, seed, size_percent):
        if e.is_dir:
            os.mkdir(e.path)
        else:
            with open(e.path, "wb") as f:
                f.write(content(e, lines))
    return root


def _usage() -> Gen:
    yield from libc.write_bytes(2, b"usage: mktree ROOT ENTRIES [SEED [SIZE_PERCENT]]\n")
    return 2


def mktext(argv: list[str]) -> Gen:
    """`mktext PATH BYTES [SEED]`: write BYTES of the tree's kind of text (`text`) to PATH, with write calls."""
    try:
        path, nbytes = argv[1], int(argv[2])
        seed = int(argv[3]) if len(argv) > 3 else 1
        if not path.startswith("/") or not 0 <= nbytes <= 1 << 26 or len(argv) > 4:
            raise ValueError
    except (ValueError, IndexError):
        yield from libc.write_bytes(2, b"usage: mktext PATH BYTES [SEED]\n")
        return 2
    data = text(nbytes, seed)
    fd = yield from libc.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    yield from libc.compute(MKTREE_PER_LINE * data.count(b"\n"))
    yield from libc.write_bytes(fd, data)
    yield from libc.close(fd)
    yield from libc.print(f"mktext: {path}: {nbytes} bytes\n")
    return 0


def mktree(argv: list[str]) -> Gen:
    """Make the tree and its manifest with system calls; print what it made."""
    try:
        root = argv[1].rstrip("/")
        entries = int(argv[2])
        seed = int(argv[3]) if len(argv) > 3 else 1
        size_percent = int(argv[4]) if len(argv) > 4 else 100
        if not root.startswith("/") or not 1 <= entries <= 100_000 or not 0 <= size_percent <= 1000 or len(argv) > 5:
            raise ValueError
    except (ValueError, IndexError):
        return (yield from _usage())
    lines = pool(seed)
    yield from libc.mkdir(root)
    files = nbytes = 0
    for e in plan(root, entries, seed, size_percent):
        yield from libc.compute(MKTREE_PER_ENTRY)
        if e.is_dir:
            yield from libc.mkdir(e.path)
            continue
        fd = yield from libc.open(e.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        data = content(e, lines)
        yield from libc.compute(MKTREE_PER_LINE * len(e.lines))
        yield from libc.write_bytes(fd, data)
        yield from libc.close(fd)
        files, nbytes = files + 1, nbytes + len(data)
    fd = yield from libc.open(manifest_path(root), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    yield from libc.write_bytes(fd, manifest(root, entries, seed, size_percent))
    yield from libc.close(fd)
    yield from libc.print(f"mktree: {root}: {entries + 1 - files} directories, {files} files, {nbytes} bytes\n")
    return 0


def text(nbytes: int, seed: int) -> bytes:
    """`nbytes` of the tree's kind of text (whole pool lines, the last one cut), the same for the same seed."""
    lines = pool(seed)
    rng = random.Random(f"text {seed}")
    out, n = [], 0
    while n < nbytes:
        line = lines[rng.randrange(POOL_LINES)]
        out.append(line)
        n += len(line)
    return b"".join(out)[:nbytes]
