"""The optional swapper: pages evicted in the background come back with their contents."""

from __future__ import annotations

import random

import pytest
from bkkit import LIMIT, HandBuilt, errno_of, run

from apkern import System, libc
from apkern.bootkernel import abi
from apkern.hw import PAGE_SIZE

PAGES = 24


def _keeper(seed: int, results: list, pages: int = PAGES, idle: int = 2_000_000):
    """Fill `pages` pages with seeded random bytes, stay idle-ish, then check every byte."""
    rng = random.Random(seed)
    blobs = [rng.randbytes(PAGE_SIZE) for _ in range(pages)]

    def main(argv):
        base = yield from libc.mmap(pages * PAGE_SIZE)
        for p, blob in enumerate(blobs):
            yield from libc.write_mem(base + p * PAGE_SIZE, blob)
        yield from libc.store(libc.PROGRAM_DATA, seed)
        for _ in range(idle // 100_000):  # compute without touching the pages: the swapper gets to run
            yield from libc.compute(100_000)
        bad = []
        for p, blob in enumerate(blobs):
            if (yield from libc.read_mem(base + p * PAGE_SIZE, PAGE_SIZE)) != blob:
                bad.append(p)
        results.append((seed, bad, (yield from libc.load(libc.PROGRAM_DATA))))
        return 1 if bad else 0

    return main


def test_contents_survive_eviction() -> None:
    results: list = []
    sim, proc = run(_keeper(11, results), swapper=True)
    stats = sim.stats
    assert proc.exit_status == 0
    assert results == [(11, [], 11)]
    assert stats["pages_evicted"] > 0
    assert stats["swap_ins"] > 0
    assert stats["swap_ins"] <= stats["pages_evicted"]


def test_without_the_swapper_nothing_is_evicted() -> None:
    results: list = []
    sim, proc = run(_keeper(11, results), swapper=False)
    assert proc.exit_status == 0 and results == [(11, [], 11)]
    assert (sim.stats["pages_evicted"], sim.stats["swap_ins"]) == (0, 0)


def test_swapper_keeps_processes_apart() -> None:
    results: list = []
    from apkern import System

    sim = System(kernel="up", strict=True, swapper=True)
    procs = [sim.spawn(_keeper(seed, results, pages=12)) for seed in (1, 2, 3)]
    sim.run()
    assert [p.exit_status for p in procs] == [0, 0, 0]
    assert sorted(results) == [(1, [], 1), (2, [], 2), (3, [], 3)]
    assert sim.stats["swap_ins"] > 0


def test_swapper_on_a_hand_built_kernel_leaks_no_frames() -> None:
    system = HandBuilt(swapper=True)
    system.boot_only()
    at_boot = system.kernel.stats()["frames_in_use"]
    results: list = []
    proc = system.spawn(_keeper(5, results))
    system.run()
    stats = system.kernel.stats()
    assert proc.exit_status == 0 and results == [(5, [], 5)]
    assert stats["pages_evicted"] > 0 and stats["swap_ins"] > 0
    assert stats["frames_in_use"] == at_boot


def test_a_killed_process_with_pages_in_swap_leaves_nothing_behind() -> None:
    from apkern import System

    results: list = []

    def main(argv):
        pid = yield from libc.spawn(_keeper(9, results, idle=10_000_000), ["keeper"])
        yield from libc.sleep(1_500_000)
        yield from libc.kill(pid, abi.SIGKILL)
        return (yield from libc.waitpid(pid)) + 100

    sim = System(kernel="up", strict=True, swapper=True)
    sim.run()
    at_boot = sim.stats["frames_in_use"]
    proc = sim.spawn(main)
    sim.run()
    assert proc.exit_status == 100 - abi.SIGKILL
    assert results == []
    assert sim.stats["pages_evicted"] > 0
    assert sim.kernel.swap_store.pages == {}
    assert sim.stats["frames_in_use"] == at_boot


# --- on-demand reclaim: a fault that finds no free frame evicts, then retries ---------------------------------

SMALL = 4 << 20  # the smallest machine: 1024 frames, about 900 of them for user pages


def _bigger_than_memory(pages: int):
    """Write a distinct word into each of `pages` pages, then read them all back."""

    def main(argv):
        base = yield from libc.mmap(pages * PAGE_SIZE)
        for p in range(pages):
            yield from libc.store(base + p * PAGE_SIZE + (p % 64) * 4, 0x1000_0000 + p)
        bad = 0
        for p in range(pages):
            bad += (yield from libc.load(base + p * PAGE_SIZE + (p % 64) * 4)) != 0x1000_0000 + p
        yield from libc.print(f"{pages} pages, {bad} bad\n")
        return 1 if bad else 0

    return main


def test_a_program_bigger_than_memory_runs_with_the_swapper() -> None:
    sim, proc = run(_bigger_than_memory(1400), memory=SMALL, swapper=True)
    stats = sim.stats
    assert (proc.exit_status, sim.console(proc.pid)) == (0, "1400 pages, 0 bad\n")
    assert stats["reclaims"] > 0 and stats["pages_evicted"] >= 1400 - SMALL // PAGE_SIZE  # at least the overflow
    assert stats["swap_ins"] > 0
    assert stats["frames_in_use"] <= SMALL // PAGE_SIZE


def test_without_a_swapper_a_program_bigger_than_memory_is_killed() -> None:
    sim, proc = run(_bigger_than_memory(1400), memory=SMALL, swapper=False)
    assert proc.exit_status == -abi.SIGKILL and sim.console(proc.pid) == ""
    assert sim.stats["reclaims"] == 0


def test_reclaim_charges_the_clock_and_the_copies() -> None:
    """Each eviction costs a page copy and an unmap; the clock's look at each page costs too."""
    from apkern.bootkernel import costs

    sim, proc = run(_bigger_than_memory(1100), memory=SMALL, swapper=True)
    small, _ = run(_bigger_than_memory(100), memory=SMALL, swapper=True)
    assert proc.exit_status == 0
    kernel = [s.stats["per_cpu"][0]["kernel_instructions"] for s in (sim, small)]
    per_page_kernel = (kernel[0] - kernel[1]) / 1000
    # a zero-filled fault for every page, plus copy-out and copy-in for those evicted and read back
    floor = costs.PAGE_FAULT + costs.ZERO_PAGE + costs.COPY_PAGE * 2 * sim.stats["swap_ins"] / 1000
    assert per_page_kernel > floor


# --- mlock: pages the swapper leaves alone ------------------------------------------------------------------


def _locker(lock: bool, results: list):
    """Lock 8 of 24 pages, then push memory hard; report which of the 8 were ever evicted."""

    def main(argv):
        base = yield from libc.mmap(24 * PAGE_SIZE)
        if lock:
            yield from libc.mlock(base, 8 * PAGE_SIZE)
        for p in range(24):
            yield from libc.store(base + p * PAGE_SIZE, p + 1)
        hog = yield from libc.mmap(1000 * PAGE_SIZE)
        for p in range(1000):
            yield from libc.store(hog + p * PAGE_SIZE, p)
        values = []
        for p in range(24):
            values.append((yield from libc.load(base + p * PAGE_SIZE)))
        results.append(values)
        return 0

    return main


@pytest.mark.parametrize("lock", [True, False])
def test_locked_pages_stay_resident_under_pressure(lock: bool) -> None:
    results: list = []
    sim = System(kernel="up", strict=True, swapper=True, memory=SMALL)
    evictions: list[int] = []
    evict = sim.kernel.swapper.evict

    def spy(aspace, vpn):
        evictions.append(vpn)
        return evict(aspace, vpn)

    sim.kernel.swapper.evict = spy
    proc = sim.spawn(_locker(lock, results))
    sim.run(limit=LIMIT)
    assert proc.exit_status == 0 and results == [list(range(1, 25))]
    base_vpn = abi.MMAP_BASE >> 12
    locked_evicted = [v for v in evictions if base_vpn <= v < base_vpn + 8]
    assert (locked_evicted == []) == lock, locked_evicted
    assert sim.stats["reclaims"] > 0


def test_mlock_checks_its_range_and_limit() -> None:
    from apkern.bootkernel import costs

    got: list = []

    def main(argv):
        base = yield from libc.mmap(4 * PAGE_SIZE)
        big = yield from libc.mmap((costs.MLOCK_LIMIT + 1) * PAGE_SIZE)
        for addr, n in ((base, 4 * PAGE_SIZE), (base, 5 * PAGE_SIZE), (0x7000_0000, PAGE_SIZE), (base, 0),
                        (big, (costs.MLOCK_LIMIT + 1) * PAGE_SIZE)):
            got.append((yield from errno_of(libc.mlock(addr, n))))
        got.append((yield from errno_of(libc.munlock(base, 4 * PAGE_SIZE))))
        yield from libc.munmap(base, 4 * PAGE_SIZE)
        return 0

    sim, proc = run(main)
    assert proc.exit_status == 0
    assert got == [None, abi.ENOMEM, abi.ENOMEM, abi.ENOMEM, abi.ENOMEM, None]
