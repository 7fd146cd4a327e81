"""The lock-discipline checker, `CmpXchg` (an owner-recording spinlock's acquire) and the debugger's reads."""

from __future__ import annotations

import pytest
from hwkit import DATA, URW, PageTables, boot, park, start_ap

from apkern.hw import (
    PAGE_SIZE,
    AssertHeld,
    AtomicAdd,
    CmpXchg,
    Compute,
    CpuId,
    EnablePaging,
    GuardedBy,
    LoadCR3,
    LockViolation,
    Machine,
    SpinWhile,
    Store,
    WriteMem,
    Xchg,
)
from apkern.hw.mmu import PTE_A, PTE_D, PTE_P, PTE_W

KVA = 0xC0000000
LOCK = KVA  # the lock word
DATA_VA = KVA + 0x100  # 16 guarded bytes
OUTSIDE = KVA + 0x200  # not guarded


def _machine(cpus: int, check: bool = True) -> tuple[Machine, PageTables]:
    m = Machine(cpus=cpus, memory=4 << 20, strict=True, check_locks=check)
    pt = PageTables(m)
    pt.map(KVA, DATA, PTE_P | PTE_W)  # kernel-only
    return m, pt


def _on(pt: PageTables) -> object:
    yield LoadCR3(pt.pd)
    yield EnablePaging()


def _acquire() -> object:
    me = (yield CpuId()) + 1
    while (holder := (yield CmpXchg(LOCK, 0, me))) != 0:
        yield SpinWhile(LOCK, holder)


def test_cmpxchg_writes_only_when_the_word_matches() -> None:
    m, pt = _machine(1, check=False)
    got: list[int] = []

    def kernel():
        yield from _on(pt)
        got.append((yield CmpXchg(LOCK, 0, 7)))
        got.append((yield CmpXchg(LOCK, 0, 9)))  # holds 7: no write
        got.append((yield CmpXchg(LOCK, 7, 0)))
        yield from park()

    boot(m, kernel())
    m.run(until=100)
    assert got == [0, 7, 7]
    assert m.memory.read_u32(DATA) == 0
    assert m.stats()["cpus"][0]["instructions"] == 2 + 3  # CR3, paging, three exchanges


def test_guarded_writes_under_the_lock_pass_and_are_checked() -> None:
    m, pt = _machine(1)

    def kernel():
        yield from _on(pt)
        yield GuardedBy(DATA_VA, 16, LOCK, "the table")
        yield from _acquire()
        yield Store(DATA_VA, 1)
        yield WriteMem(DATA_VA + 4, b"\x01\x02\x03\x04")
        yield Xchg(DATA_VA + 8, 3)
        yield AtomicAdd(DATA_VA + 12, 1)
        yield CmpXchg(DATA_VA + 12, 1, 2)
        yield Store(LOCK, 0)
        yield Store(OUTSIDE, 5)  # not guarded: no lock needed
        yield from park()

    boot(m, kernel())
    m.run(until=100)
    assert m.locks is not None and m.locks.checked == 5
    assert m.memory.read_u32(DATA + 0x10C) == 2


@pytest.mark.parametrize("how", ["store", "writemem", "xchg", "atomicadd", "cmpxchg"])
def test_a_guarded_write_without_the_lock_fails(how: str) -> None:
    m, pt = _machine(1)
    ops = {
        "store": Store(DATA_VA + 4, 1),
        "writemem": WriteMem(DATA_VA + 14, b"abcd"),  # overlaps the end of the range
        "xchg": Xchg(DATA_VA, 1),
        "atomicadd": AtomicAdd(DATA_VA, 1),
        "cmpxchg": CmpXchg(DATA_VA, 0, 1),
    }

    def kernel():
        yield from _on(pt)
        yield GuardedBy(DATA_VA, 16, LOCK, "the table", "table_lock")
        yield ops[how]
        yield from park()

    boot(m, kernel())
    message = r"cpu0 wrote the table \(\+0x[0-9a-f]+\) without holding table_lock \(free\)"
    with pytest.raises(LockViolation, match=message):
        m.run(until=100)


def test_the_violation_names_the_cpu_holding_the_lock() -> None:
    m, pt = _machine(2)

    def ap(cpu):
        yield from _on(pt)
        yield Compute(50)  # the BSP holds the lock by now
        yield Store(DATA_VA, 1)
        yield from park()

    def kernel():
        yield from _on(pt)
        yield GuardedBy(DATA_VA, 16, LOCK, "the table")
        yield from _acquire()
        yield from start_ap(m, 1, ap)
        yield Compute(1000)
        yield from park()

    boot(m, kernel())
    with pytest.raises(LockViolation, match="cpu1 wrote the table .* without holding spinlock \\(held by cpu0\\)"):
        m.run(until=2000)


def test_the_checker_is_off_by_default_and_costs_no_time() -> None:
    def run(check: bool) -> Machine:
        m, pt = _machine(1, check=check)

        def kernel():
            yield from _on(pt)
            yield GuardedBy(DATA_VA, 16, LOCK, "the table")
            yield from _acquire()
            yield Store(DATA_VA, 1)
            yield Store(LOCK, 0)
            yield Store(DATA_VA, 2)  # a violation, seen only by the checker
            yield from park()

        boot(m, kernel())
        if check:
            with pytest.raises(LockViolation):
                m.run(until=100)
        else:
            m.run(until=100)
        return m

    off, on = run(False), run(True)
    assert off.locks is None and off.memory.read_u32(DATA + 0x100) == 2  # unchecked: the write went through
    assert on.memory.read_u32(DATA + 0x100) == 1  # checked: stopped before it
    # the same instructions up to the violation: CR3, paging, CpuId, CmpXchg, two stores (GuardedBy is free)
    assert on.now == 6 and on.stats()["cpus"][0]["instructions"] == 6


def test_assert_held_passes_for_the_holder_only_and_costs_nothing() -> None:
    m, pt = _machine(1)
    seen: list[int] = []

    def kernel():
        yield from _on(pt)
        yield from _acquire()
        yield AssertHeld(LOCK, "the bookkeeping")
        seen.append(m.now)
        yield Store(LOCK, 0)
        yield AssertHeld(LOCK, "the bookkeeping", "book_lock")
        yield from park()

    boot(m, kernel())
    with pytest.raises(LockViolation, match=r"cpu0 changed the bookkeeping without holding book_lock \(free\)"):
        m.run(until=100)
    assert seen == [4] and m.now == 5  # CR3, paging, CpuId, CmpXchg; then the release


def test_debugger_reads_without_side_effects() -> None:
    m, pt = _machine(1, check=False)
    uva = 0x40000000
    pt.map(uva, DATA + PAGE_SIZE, URW)
    m.memory.write_u32(DATA + PAGE_SIZE + 8, 0xFEEDF00D)
    before = (pt.pte(uva), pt.pde(uva))
    assert m.debugger.read_u32(pt.pd, uva + 8) == 0xFEEDF00D
    assert m.debugger.read_u32(pt.pd, uva + PAGE_SIZE) is None  # unmapped page
    assert m.debugger.read_u32(pt.pd, 0x80000000) is None  # no page table
    assert m.debugger.translate(pt.pd, KVA + 4) == DATA + 4
    assert (pt.pte(uva), pt.pde(uva)) == before and not before[0] & (PTE_A | PTE_D)
    assert m.now == 0 and m.cpus[0].mmu.tlb.misses == 0
