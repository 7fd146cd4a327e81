"""The TCB table and the process records grow as a slab does: more threads than the start-up table holds
behave as on the uniprocessor kernel (which has no such table), and only a lack of kernel memory stops them."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from apkern import System, libc
from apkern.appkernel import kernel as ak_kernel
from apkern.appkernel.kernel import MAX_TCBS, TCBS_PER_PAGE
from apkern.appkernel.slots import SlotTable
from apkern.hw import PAGE_SIZE, Store

Gen = Generator[Any, Any, Any]
PROCESSES, THREADS = 5, 60  # 300 application threads alive together (and 5 main threads): over MAX_TCBS


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


def _run(kernel: str, strict: bool = True, **kw: Any) -> tuple[System, list[Any], str]:
    sim = System(kernel=kernel, cpus=1 if kernel == "up" else 4, seed=0, strict=strict, **kw)
    procs = [sim.spawn(many_threads, ["many_threads", str(THREADS)]) for _ in range(PROCESSES)]
    sim.run(limit=400_000_000)
    return sim, [(p.exit_status, p.crash) for p in procs], sim.console()


@pytest.fixture(scope="module")
def on_up() -> tuple[list[Any], str]:
    _, statuses, console = _run("up")
    assert console.count(f"joined {THREADS}, sum {sum(range(THREADS))}") == PROCESSES
    return statuses, console


@pytest.mark.parametrize("extensions", [(), ("migration",)], ids=["prototype", "migration"])
def test_more_threads_than_the_start_up_table_behave_as_on_up(on_up: tuple[list[Any], str], extensions: Any) -> None:
    """(Before the table grew, one process died of SIGILL here: its crt0 could not create a TCB.)"""
    sim, statuses, console = _run("apkern", check_locks=True, check_tlb=True, extensions=extensions)
    assert (statuses, console) == on_up
    ak = sim.appkernel.ak
    assert ak.tcbs.hwm > MAX_TCBS  # the table did grow ...
    assert ak.tcbs.count == len(ak.tcbs.pages) * TCBS_PER_PAGE >= ak.tcbs.hwm
    assert ak.tcbs.created == ak.tcbs.freed  # ... and every TCB was freed again
    if ak.migration is not None:  # a window per TCB, in as many blocks as the table has pages
        assert len(ak.migration.pages) == len(ak.tcbs.pages)


def test_without_kernel_memory_the_thread_is_refused_and_the_others_go_on(
    on_up: tuple[list[Any], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The table cannot grow: the bootstrap thread of the thread that finds it full dies, naming EAGAIN."""

    def no_page(self: Any, guarded: Any) -> Gen:
        return None
        yield

    monkeypatch.setattr(ak_kernel.AppKernel, "_page", no_page)
    sim, statuses, console = _run("apkern", strict=False)  # crt0's crash is not the test's error
    died = [crash for status, crash in statuses if status != 0]
    assert len(died) == 1 and died[0]["signal"] == "SIGILL"
    assert "BlockingIOError(11, 'Resource temporarily unavailable')" in died[0]["why"]  # EAGAIN, named
    assert console.count(f"joined {THREADS}, sum {sum(range(THREADS))}") == PROCESSES - 1


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
