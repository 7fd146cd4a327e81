"""The multiprogramming mix: the Linux version's gcc, find, grep, find | grep, FFT and LU started together.

`mix [SCALE [THREADS [SEED [SIZE_PERCENT]]]]` makes the tree /mix (mktree, SCALE x
ENTRIES_PER_SCALE entries, file sizes as measured, or SIZE_PERCENT of that) and
gcc's input /mix.i (mktext, SCALE x GCC_BYTES_PER_SCALE bytes) unless they exist,
then starts every member at once, each with its standard output and error going
to /mix.out/NAME, and waits until the last one finishes; the journal's figure is
that time. It prints each member's exit status, in a fixed order, and exits 0
when every member succeeded (every one checks its own result: gcc its output
against its input, find and grep against the tree's manifest, find | grep both,
LU its L U against the input; FFT's output stays in /fft.out).

The members at SCALE s (1, the default, keeps a run short):
- gcc -verify /mix.i: cc1's traced compilation scaled to 1,024 s bytes of input
  (about 12 million instructions a step: grep's order at SIZE_PERCENT 100);
- find -verify: walks the tree;
- grep -r -verify PATTERN_DEFAULT: reads every file of the tree;
- findgrep -verify: find | grep on the tree's paths;
- fft THREADS M with M = min(7, 3 + s): 4**M points;
- lu THREADS N with N = 32 s, 8 x 8 blocks.
THREADS (default 8, as the journal ran SPLASH-2 with 8 threads) is the thread
count of FFT and LU.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

from ..hw.ops import Op
from ..userland import libc
from . import tree
from .findgrep import spawn_io
from .grep import PATTERN_DEFAULT

Gen = Generator[Op, Any, Any]

ROOT = "/mix"
OUT = "/mix.out"
ENTRIES_PER_SCALE = 250
GCC_INPUT = "/mix.i"
GCC_BYTES_PER_SCALE = 1024


def members(scale: int, threads: int) -> list[tuple[str, list[str]]]:
    """(name, argv) of every member, in the order the mix starts them and reports them."""
    m = tree.manifest_path(ROOT)
    return [
        ("gcc", ["gcc", "-verify", GCC_INPUT]),
        ("find", ["find", "-verify", m, ROOT]),
        ("grep", ["grep", "-r", "-verify", m, PATTERN_DEFAULT, ROOT]),
        ("findgrep", ["findgrep", "-verify", ROOT, PATTERN_DEFAULT]),
        ("fft", ["fft", str(threads), str(min(7, 3 + scale))]),
        ("lu", ["lu", str(threads), str(32 * scale), "8"]),
    ]


def _usage() -> Gen:
    yield from libc.write_bytes(2, b"usage: mix [SCALE [THREADS [SEED [SIZE_PERCENT]]]] (SCALE 1..8, THREADS 1..32)\n")
    return 2


def mix(argv: list[str]) -> Gen:
    """Make the tree if needed, start every member together, wait for all; print their exit statuses."""
    try:
        scale = int(argv[1]) if len(argv) > 1 else 1
        threads = int(argv[2]) if len(argv) > 2 else 8
        seed = int(argv[3]) if len(argv) > 3 else 1
        size = int(argv[4]) if len(argv) > 4 else 100
        if not (1 <= scale <= 8 and 1 <= threads <= 32 and 0 <= size <= 1000) or len(argv) > 5:
            raise ValueError
    except ValueError:
        return (yield from _usage())
    try:
        yield from libc.stat(ROOT)
    except OSError:
        pid = yield from libc.spawn("mktree", ["mktree", ROOT, str(ENTRIES_PER_SCALE * scale), str(seed), str(size)])
        if (yield from libc.waitpid(pid)) != 0:
            yield from libc.print("mix: mktree failed\n")
            return 1
    try:
        yield from libc.stat(GCC_INPUT)
    except OSError:
        pid = yield from libc.spawn("mktext", ["mktext", GCC_INPUT, str(GCC_BYTES_PER_SCALE * scale), str(seed)])
        if (yield from libc.waitpid(pid)) != 0:
            yield from libc.print("mix: mktext failed\n")
            return 1
    yield from libc.mkdir(OUT)
    started = {}
    for name, args in members(scale, threads):
        fd = yield from libc.open(f"{OUT}/{name}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        started[(yield from spawn_io(name, args, stdout=fd, stderr=fd))] = name
        yield from libc.close(fd)
    status = {}
    for pid, name in started.items():  # in order: the mix ends when the last one has, whatever the order
        status[name] = yield from libc.waitpid(pid)
    names = [name for name, _ in members(scale, threads)]
    yield from libc.print("mix: " + ", ".join(f"{n} exit {status[n]}" for n in names) + "\n")
    good = all(status[n] == 0 or (n == "grep" and status[n] == 1) for n in names)  # grep: 1 is "no line matched"
    return 0 if good else 1
