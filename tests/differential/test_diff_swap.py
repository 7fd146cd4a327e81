"""The swapper under the application kernel: section 4.3's TLB shoot-down, and what happens without it.

Threads of several processes write seeded patterns into more memory than the
machine has, then read them back. On the uniprocessor kernel the swapper (on a
timer, and on demand when frames run out) copies pages out and back. Under the
application kernel the same pages are in use on the application processors: the
bootstrap kernel, built with the section 4.3 patch, brackets every eviction with
the application kernel's shoot-down, so the output is the same, with the machine's
TLB checker on. Built without the patch, an AP keeps using a translation the
swapper has taken away: the checker stops the run (and without the checker the
data goes wrong), which is the paper's warning.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

import pytest
from diffkit import assert_ak_clean, assert_same, observe

from apkern import System, libc
from apkern.hw import StaleTLB

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


def test_reference_run_swaps() -> None:
    ref = observe(pressure, ARGV, "up", 1, memory=MEMORY, swapper=True)
    assert ref.console == "statuses [0, 0, 0, 0]\n"
    assert all(ref.files[f"/out{i}"] == b"bad words [0, 0]\n" for i in range(3))
    assert ref.files["/out9"] == b"bad words [0]\n"
    assert ref.stats["reclaims"] > 0 and ref.stats["swap_ins"] > 0


@pytest.mark.parametrize("cpus", [2, 4, 8])
def test_swapping_under_the_application_kernel_is_invisible(cpus: int) -> None:
    ref = observe(pressure, ARGV, "up", 1, memory=MEMORY, swapper=True)
    got = observe(pressure, ARGV, "apkern", cpus, memory=MEMORY, swapper=True)
    assert_same(ref, got)
    assert_ak_clean(got)
    st = got.stats
    assert st["pages_evicted"] > 0 and st["tlb_shootdowns"] == st["pages_evicted"]
    assert st["tlb_shootdown_ipis"] > 0  # some evicted pages were in use on an AP at the time


@pytest.mark.parametrize("cpus", [4, 8])
def test_without_the_patch_an_ap_uses_a_page_the_swapper_took(cpus: int) -> None:
    with pytest.raises(StaleTLB, match="stale TLB entry"):
        observe(pressure, ARGV, "apkern", cpus, memory=MEMORY, swapper=True, tlb_patch=False)


def test_without_the_patch_and_without_the_checker_the_data_goes_wrong() -> None:
    """The hot set's counters: updates made through a stale translation land in a frame already copied out."""
    sim = System(kernel="apkern", cpus=4, memory=MEMORY, swapper=True, tlb_patch=False)
    proc = sim.spawn(pressure, ARGV)
    sim.run(limit=2_000_000_000)
    assert proc.exit_status == 0
    assert sim.console(proc.pid).startswith("statuses [1,")  # the hot process found lost updates
    assert sim.fs.read_file("/out9") != b"bad words [0]\n"
