"""A memory-pressure workload for the swapper: threads of several processes write and verify patterns.

Three processes each run a thread that streams through more pages than their
share of the machine and a thread that keeps a small hot set; a fourth process
keeps a hot set alone (no sibling's page fault ever makes its CPU reload CR3, so
its TLB stays warm while the swapper's clock finds the pages unused). Each
process writes what it found wrong into `/outN`; `pressure` prints the statuses.
On a 4 MiB machine this touches more memory than there is: the swapper evicts on
its timer and on demand. Used by the tests of the section 4.3 shoot-down and by
`apkern bench extensions`.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

from ..userland import libc

PAGE = 4096
MEMORY = 4 << 20  # the smallest machine: about 900 frames for user pages


def _pattern(seed: int, page: int, word: int) -> int:
    return (seed * 0x9E3779B1 + page * 0x85EBCA6B + word * 0xC2B2AE35) & 0xFFFFFFFF


HOT_PAGES = 12  # a working set that fits in a TLB: its translations stay cached, the clock sees it unused
HOT_ROUNDS = 300


def _streamer(arg: int) -> Generator[Any, Any, int]:
    """Write a pattern into `pages` pages, compute a while, verify twice; return the bad words."""
    seed, pages = arg & 0xFFFF, arg >> 16
    base = yield from libc.mmap(pages * PAGE)
    bad = 0
    for p in range(pages):
        for w in range(8):
            yield from libc.store(base + p * PAGE + w * 512, _pattern(seed, p, w))
    for _ in range(2):
        yield from libc.compute(20_000)
        for p in range(pages):
            for w in range(8):
                bad += (yield from libc.load(base + p * PAGE + w * 512)) != _pattern(seed, p, w)
    return bad


def _hot(arg: int) -> Generator[Any, Any, int]:
    """Count in a few pages, round after round; return how many counters came out wrong."""
    seed = arg & 0xFFFF
    base = yield from libc.mmap(HOT_PAGES * PAGE)
    for _ in range(HOT_ROUNDS):
        for p in range(HOT_PAGES):
            a = base + p * PAGE + (seed % 64) * 4
            yield from libc.store(a, (yield from libc.load(a)) + 1)
        yield from libc.compute(5000)
    bad = 0
    for p in range(HOT_PAGES):
        bad += (yield from libc.load(base + p * PAGE + (seed % 64) * 4)) != HOT_ROUNDS
    return bad


def _process(argv: list[str]) -> Generator[Any, Any, int]:
    """One thread that streams through memory, one that keeps a small hot set (its faults hold the other)."""
    index, pages = int(argv[1]), int(argv[2])
    tids = []
    for t, body in enumerate((_streamer, _hot)):
        tids.append((yield from libc.thread_create(body, (pages << 16) | (index * 16 + t))))
    bad = []
    for tid in tids:
        bad.append((yield from libc.thread_join(tid)))
    return (yield from _report(index, bad))


def _hot_process(argv: list[str]) -> Generator[Any, Any, int]:
    """A hot set alone in its process: no sibling's fault makes its CPU reload CR3, its TLB stays warm."""
    index = int(argv[1])
    return (yield from _report(index, [(yield from _hot(index * 16))]))


def _report(index: int, bad: list[int]) -> Generator[Any, Any, int]:
    fd = yield from libc.open(f"/out{index}", os.O_WRONLY | os.O_CREAT)
    yield from libc.write_bytes(fd, f"bad words {bad}\n".encode())
    yield from libc.close(fd)
    return 1 if any(bad) else 0


def pressure(argv: list[str]) -> Generator[Any, Any, int]:
    procs, pages = int(argv[1]), int(argv[2])
    pids = [(yield from libc.spawn(_hot_process, ["hot", "9"]))]
    for i in range(procs):
        pids.append((yield from libc.spawn(_process, ["proc", str(i), str(pages)])))
    statuses = []
    for pid in pids:
        statuses.append((yield from libc.waitpid(pid)))
    yield from libc.print(f"statuses {statuses}\n")
    return 0


ARGV = ["pressure", "3", "300"]  # 3 processes x 300 pages and a hot set: more than the machine has
