"""The TCB table and the process records grow as a slab does: more threads than the start-up table holds
behave as on the uniprocessor kernel (which has no such table), and only a lack of kernel memory stops them."""

from __future__ import annotations

from collections.abc import Generator
from types import SimpleNamespace
from typing import Any

import pytest

from apkern import System, libc
from apkern.appkernel.kernel import START_TCBS, TCBS_PER_PAGE
from apkern.appkernel.migration import MIG_SIZE
from apkern.appkernel.slots import SlotTable
from apkern.hw import PAGE_SIZE, Store

Gen = Generator[Any, Any, Any]
PROCESSES, THREADS = 5, 60  # 300 application threads alive together (and 5 main threads): over START_TCBS


def _sleeper(arg: int) -> Gen:
    yield from libc.sleep(20_000_000)  # long enough for every process to have started all of its threads
    return arg


def many_threads(argv: list[str]) -> Gen:
    """Start N sleeping threads, join them, print how many were started and the sum of their results."""
    tids = []
    for i in range(int(argv[1])):
        try:
            tids.append((yield from libc.thread_create(_sleeper, i)))
        except OSError as e:
            yield from libc.print(f"thread {i}: {e.strerror}\n")
            break
    total = 0
    for tid in tids:
        total += yield from libc.thread_join(tid)
    yield from libc.print(f"joined {len(tids)}, sum {total}\n")
    return 0


def _run(kernel: str, strict: bool = True, placement: str | None = None, **kw: Any) -> tuple[System, list[Any], str]:
    sim = System(kernel=kernel, cpus=1 if kernel == "up" else 4, seed=0, strict=strict, **kw)
    procs = [sim.spawn(many_threads, ["many_threads", str(THREADS)], placement) for _ in range(PROCESSES)]
    sim.run(limit=400_000_000)
    return sim, [(p.exit_status, p.crash) for p in procs], sim.console()


def _guarded(sim: System, kva: int) -> list[str]:
    """What the lock checker guards at kernel address `kva`."""
    return [what for start, end, _, what, _ in sim.machine.locks.ranges if start <= kva < end]


@pytest.fixture(scope="module")
def on_up() -> tuple[list[Any], str]:
    _, statuses, console = _run("up")
    assert console.count(f"joined {THREADS}, sum {sum(range(THREADS))}") == PROCESSES
    return statuses, console


@pytest.mark.parametrize("extensions", [(), ("migration",)], ids=["prototype", "migration"])
def test_more_threads_than_the_start_up_table_behave_as_on_up(on_up: tuple[list[Any], str], extensions: Any) -> None:
    """(Before the table grew, one process died of SIGILL here: its crt0 could not create a TCB.)"""
    placement = "auto" if extensions else None  # threads that may migrate have a window each
    sim, statuses, console = _run(
        "apkern", check_locks=True, check_tlb=True, extensions=extensions, placement=placement
    )
    assert (statuses, console) == on_up
    ak = sim.appkernel.ak
    tcbs = ak.tcbs
    assert tcbs.hwm > START_TCBS  # the table did grow ...
    assert tcbs.count == len(tcbs.pages) * TCBS_PER_PAGE >= tcbs.hwm
    assert tcbs.created == tcbs.freed and len(tcbs.free) == tcbs.hwm  # ... and every TCB was freed again
    assert all(_guarded(sim, tcbs.kva(n)) == ["the TCB table"] for n in (1, START_TCBS, START_TCBS + 1, tcbs.hwm))
    if ak.migration is not None:  # a window per TCB, inside its page's block, none shared
        mig = ak.migration
        windows = [mig._kva(SimpleNamespace(id=n)) for n in range(1, tcbs.hwm + 1)]
        assert len(set(windows)) == len(windows) and len(mig.pages) == len(tcbs.pages)
        for n, w in enumerate(windows, 1):
            block = mig.pages[(n - 1) // TCBS_PER_PAGE]
            assert block <= w < block + TCBS_PER_PAGE * MIG_SIZE
            assert not _guarded(sim, w)  # written by the CPU running the thread, without the lock


def _one_thread(argv: list[str]) -> Gen:
    yield from libc.sleep(30_000_000)  # every process's application thread alive at once
    yield from libc.print("up\n")
    return 0


def _processes(kernel: str, n: int, **kw: Any) -> tuple[System, list[Any]]:
    sim = System(kernel=kernel, cpus=1 if kernel == "up" else 4, seed=0, strict=False, **kw)
    procs = [sim.spawn(_one_thread, ["one_thread"]) for _ in range(n)]
    sim.run(limit=400_000_000)
    return sim, [(p.exit_status, p.crash) for p in procs]


def test_the_process_records_grow_too() -> None:
    """A record per process with application threads: 300 processes need more than the 256 of start-up."""
    _, on_up = _processes("up", 300)
    sim, on_ak = _processes("apkern", 300, check_locks=True)
    assert on_ak == on_up == [(0, None)] * 300
    records = sim.appkernel.ak.proc_slots
    assert records.hwm == 300 and _guarded(sim, records.kva(300)) == ["the process records"]


def test_out_of_kernel_memory_a_thread_is_refused_and_nothing_leaks() -> None:
    """With memory for fewer: the process whose record finds no page gets EAGAIN (its crt0 dies of it, naming it),
    the table keeps its TCB for the next, the others run or are killed by the bootstrap kernel for memory."""
    sim, statuses = _processes("apkern", 257, memory=10_575_872, check_locks=True)
    refused = [c for s, c in statuses if s == -4]
    oom = [c for s, c in statuses if s == -9]
    assert len(refused) == 1 and "BlockingIOError(11, 'Resource temporarily unavailable')" in refused[0]["why"]
    assert oom and all(c["death"] == "out of memory" for c in oom)
    assert sim.console().count("up") == sum(1 for s, _ in statuses if s == 0) > 200
    ak = sim.appkernel.ak
    assert ak.tcbs.hwm == START_TCBS + 1 and ak.proc_slots.hwm == START_TCBS  # TCBs grew, records not
    assert not ak.tcbs.live and len(ak.tcbs.free) == ak.tcbs.hwm  # the refused thread's TCB went back
    assert sim.machine.memory.read_u32(sim.machine.locks.lock_word(sim.machine.cpus[0], ak.lock.kva)) == 0


def test_slot_table_pages() -> None:
    grown: list[int] = []

    def grow(table: SlotTable) -> Gen:
        if len(grown) == 2:
            return None
        grown.append(0x9000_0000 + len(grown) * 0x10000)
        yield Store(0, 0)
        return grown[-1]

    t = SlotTable(0x8000_0000, 64, 128, 0x7000_0000, grow)
    assert t.per_page == PAGE_SIZE // 64 and t.count == 128
    assert [t.kva(n) for n in (1, 2, 64, 65, 128)] == [
        0x8000_0000,
        0x8000_0040,
        0x8000_0000 + 63 * 64,
        0x8000_1000,
        0x8000_1000 + 63 * 64,
    ]
    got = []
    for _ in range(128 + 2 * 64 + 1):
        gen = t.alloc()
        try:
            while True:
                next(gen)
        except StopIteration as stop:
            got.append(stop.value)
    assert got == [*range(1, 257), None]  # two pages more, then no more
    assert t.kva(129) == 0x9000_0000 and t.kva(256) == 0x9001_0000 + 63 * 64
    with pytest.raises(ValueError):
        SlotTable(0, 48, 10, 0)
