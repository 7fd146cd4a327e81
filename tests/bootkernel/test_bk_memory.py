"""Demand paging, regions and frame accounting of the bootstrap kernel."""

from __future__ import annotations

import random

import pytest
from bkkit import errno_of, run

from apkern import System, libc
from apkern.bootkernel import abi
from apkern.hw import PAGE_SIZE


def _toucher(pages_mapped: int, pages_touched: int, seen: list):
    def main(argv):
        base = yield from libc.mmap(pages_mapped * PAGE_SIZE)
        for p in range(pages_touched):
            seen.append((yield from libc.read_mem(base + p * PAGE_SIZE, PAGE_SIZE)))
        return 0

    return main


def test_mmap_pages_read_zero_and_are_allocated_only_when_touched() -> None:
    fills = {}
    for touched in (0, 1, 3, 7):
        seen: list[bytes] = []
        sim, proc = run(_toucher(16, touched, seen))
        assert proc.exit_status == 0
        assert seen == [bytes(PAGE_SIZE)] * touched
        fills[touched] = sim.stats["zero_fills"]
    # mapping 16 pages costs nothing until they are touched; then one zero-fill per page
    assert [fills[t] - fills[0] for t in (1, 3, 7)] == [1, 3, 7]


def test_peak_frames_grow_with_pages_touched_not_pages_mapped() -> None:
    peaks = []
    for mapped, touched in ((64, 2), (4, 2), (64, 10)):
        sim, _ = run(_toucher(mapped, touched, []))
        peaks.append(sim.stats["frames_peak"])
    assert peaks[0] == peaks[1]
    assert peaks[2] - peaks[0] == 8


def test_mapped_memory_keeps_what_is_written() -> None:
    rng = random.Random(7)
    blob = rng.randbytes(3 * PAGE_SIZE + 123)
    got = []

    def main(argv):
        base = yield from libc.mmap(len(blob))
        yield from libc.write_mem(base + 5, blob[: 3 * PAGE_SIZE - 5])  # unaligned, across pages
        yield from libc.store(base + 3 * PAGE_SIZE, 0xDEADBEEF)
        got.append((yield from libc.read_mem(base + 5, 3 * PAGE_SIZE - 5)))
        got.append((yield from libc.load(base + 3 * PAGE_SIZE)))
        got.append((yield from libc.read_mem(base, 5)))
        return 0

    _, proc = run(main)
    assert proc.exit_status == 0
    assert got == [blob[: 3 * PAGE_SIZE - 5], 0xDEADBEEF, bytes(5)]


def test_two_mappings_are_distinct_and_separate() -> None:
    got = []

    def main(argv):
        a = yield from libc.mmap(PAGE_SIZE)
        b = yield from libc.mmap(PAGE_SIZE)
        yield from libc.store(a, 1)
        yield from libc.store(b, 2)
        got.append((a, b, (yield from libc.load(a)), (yield from libc.load(b))))
        return 0

    run(main)
    ((a, b, va, vb),) = got
    assert a != b and abs(a - b) >= PAGE_SIZE
    assert (va, vb) == (1, 2)


def test_munmap_then_access_is_sigsegv() -> None:
    after = []

    def main(argv):
        base = yield from libc.mmap(2 * PAGE_SIZE)
        yield from libc.store(base, 42)
        yield from libc.munmap(base, 2 * PAGE_SIZE)
        after.append("unmapped")
        yield from libc.load(base)
        after.append("survived")
        return 0

    sim, proc = run(main)
    assert proc.exit_status == -abi.SIGSEGV
    assert after == ["unmapped"]


def test_munmap_of_part_of_a_mapping_is_einval_and_keeps_it() -> None:
    got = []

    def main(argv):
        base = yield from libc.mmap(2 * PAGE_SIZE)
        yield from libc.store(base, 42)
        got.append((yield from errno_of(libc.munmap(base, PAGE_SIZE))))
        got.append((yield from errno_of(libc.munmap(base + PAGE_SIZE, PAGE_SIZE))))
        got.append((yield from libc.load(base)))
        got.append((yield from errno_of(libc.munmap(base, 2 * PAGE_SIZE))))
        return 0

    run(main)
    assert got == [abi.EINVAL, abi.EINVAL, 42, None]


def test_munmap_frees_the_frames() -> None:
    def mapper(unmap: bool):
        def main(argv):
            base = yield from libc.mmap(8 * PAGE_SIZE)
            for p in range(8):
                yield from libc.store(base + p * PAGE_SIZE, p)
            if unmap:
                yield from libc.munmap(base, 8 * PAGE_SIZE)
            yield from libc.sleep(0)  # so the stats below are read while the process still lives
            in_use.append(sim_ref[0].stats["frames_in_use"])
            return 0

        return main

    in_use: list[int] = []
    for unmap in (False, True):
        sim = System(kernel="up", strict=True)
        sim_ref = [sim]
        sim.spawn(mapper(unmap))
        sim.run()
    assert in_use[0] - in_use[1] == 8


@pytest.mark.parametrize("addr", [abi.CODE_BASE, abi.CODE_BASE + 0x800])
def test_writing_to_the_code_region_is_sigsegv(addr: int) -> None:
    after = []

    def main(argv):
        after.append((yield from libc.load(addr)))  # reading the text is allowed
        yield from libc.store(addr, 1)
        after.append("survived")
        return 0

    _, proc = run(main)
    assert proc.exit_status == -abi.SIGSEGV
    assert len(after) == 1


@pytest.mark.parametrize("addr", [0x0, 0x10, abi.DATA_BASE + abi.DATA_SIZE, abi.MMAP_BASE, 0xC0000000, 0xFFFFF000])
def test_access_outside_every_region_is_sigsegv(addr: int) -> None:
    def main(argv):
        yield from libc.load(addr)
        return 0

    _, proc = run(main)
    assert proc.exit_status == -abi.SIGSEGV


def test_data_segment_starts_zero_and_is_writable() -> None:
    got = []

    def main(argv):
        got.append((yield from libc.load(libc.PROGRAM_DATA)))
        yield from libc.store(libc.PROGRAM_DATA, 99)
        got.append((yield from libc.load(libc.PROGRAM_DATA)))
        got.append((yield from libc.load(abi.DATA_BASE + abi.DATA_SIZE - 4)))
        return 0

    _, proc = run(main)
    assert proc.exit_status == 0
    assert got == [0, 99, 0]


def test_processes_have_separate_address_spaces() -> None:
    seen = []

    def child(argv):
        seen.append(("child", (yield from libc.load(libc.PROGRAM_DATA))))
        yield from libc.store(libc.PROGRAM_DATA, 222)
        return 0

    def main(argv):
        yield from libc.store(libc.PROGRAM_DATA, 111)
        pid = yield from libc.spawn(child, ["child"])
        yield from libc.waitpid(pid)
        seen.append(("parent", (yield from libc.load(libc.PROGRAM_DATA))))
        return 0

    _, proc = run(main)
    assert proc.exit_status == 0
    assert seen == [("child", 0), ("parent", 111)]


# --- frame accounting ----------------------------------------------------------------------------


def _busy_programs():
    def child_reader(argv):
        fd = int(argv[1])
        yield from libc.read_bytes(fd, 10)  # blocks until killed
        return 0

    def toucher(argv):
        base = yield from libc.mmap(20 * PAGE_SIZE)
        for p in range(0, 20, 2):
            yield from libc.store(base + p * PAGE_SIZE, p)
        yield from libc.munmap(base, 20 * PAGE_SIZE)
        yield from libc.mmap(3 * PAGE_SIZE)  # left mapped: freed at exit
        base = yield from libc.mmap(3 * PAGE_SIZE)
        yield from libc.store(base + PAGE_SIZE, 1)
        return 0

    def worker(arg):
        yield from libc.compute(500)
        return arg

    def main(argv):
        r, w = yield from libc.pipe()
        reader = yield from libc.spawn(child_reader, ["reader", str(r)])
        toucher_pid = yield from libc.spawn(toucher, ["toucher"])
        tids = []
        for i in range(3):
            tids.append((yield from libc.thread_create(worker, i)))
        for t in tids:
            yield from libc.thread_join(t)
        yield from libc.sleep(20_000)
        yield from libc.kill(reader, abi.SIGKILL)
        yield from libc.waitpid(reader)
        yield from libc.waitpid(toucher_pid)
        yield from libc.spawn("segv", ["segv"])  # never waited for: a zombie until we exit
        base = yield from libc.mmap(PAGE_SIZE)
        yield from libc.store(base, 7)
        yield from libc.sleep(1_100_000)  # long enough for the swapper (when built in) to run twice
        yield from libc.load(base)
        return 0

    return main


@pytest.mark.parametrize("swapper", [False, True])
def test_frames_in_use_return_to_the_boot_value_after_every_process_exits(swapper: bool) -> None:
    sim = System(kernel="up", strict=True, swapper=swapper)
    sim.run()  # boot only
    at_boot = sim.stats["frames_in_use"]
    procs = [sim.spawn(_busy_programs()), sim.spawn("pipeline", ["pipeline", "5"]), sim.spawn("signals")]
    sim.spawn("pagetouch", ["pagetouch", "6"])
    sim.spawn("threads", ["threads", "3"])
    sim.run()
    assert [p.exit_status for p in procs] == [0, 0, 0]
    stats = sim.stats
    assert stats["frames_peak"] > at_boot + 20
    assert stats["frames_in_use"] == at_boot
    if swapper:
        assert stats["pages_evicted"] > 0
        assert sim.kernel.swap_store.pages == {}


# --- running out of physical memory ------------------------------------------------------------


def test_running_out_of_physical_memory_kills_only_the_hog() -> None:
    def hog(argv):
        pages = 1200  # more than a 4 MiB machine has
        base = yield from libc.mmap(pages * PAGE_SIZE)
        for p in range(pages):
            yield from libc.store(base + p * PAGE_SIZE, p)
        return 0

    sim = System(kernel="up", strict=True, memory=4 << 20)
    sim.run()
    at_boot = sim.stats["frames_in_use"]
    victim = sim.spawn(hog)
    bystander = sim.spawn("pipeline", ["pipeline", "3"])
    sim.run()
    assert victim.exit_status is not None and victim.exit_status < 0  # killed by a signal
    assert bystander.exit_status == 0
    assert sim.stats["frames_in_use"] == at_boot
    after = sim.spawn("hello")
    sim.run()
    assert after.exit_status == 0


def test_spawn_without_free_memory_fails_with_an_error() -> None:
    got = []

    def child(argv):
        return 0
        yield

    def hog(argv):
        yield from libc.print("hogging\n")  # maps libc's staging page before memory runs out
        frames = sim.kernel.frames
        base = yield from libc.mmap(1000 * PAGE_SIZE)
        p = 0
        while frames.free > 1:  # leave one frame for a page table, if one is needed
            yield from libc.store(base + p * PAGE_SIZE, p)
            p += 1
        got.append((yield from errno_of(libc.spawn(child, ["child"]))))
        return 0

    sim = System(kernel="up", strict=True, memory=4 << 20)
    sim.run()
    at_boot = sim.stats["frames_in_use"]
    proc = sim.spawn(hog)
    sim.run()
    assert proc.exit_status == 0
    assert got and got[0] in (abi.ENOMEM, abi.EAGAIN)
    assert sim.stats["frames_in_use"] == at_boot
