"""Atomic operations and a spinlock built from them."""

from __future__ import annotations

from itertools import pairwise

import pytest
from hwkit import boot, machine, park, start_ap

from apkern.hw import AtomicAdd, Compute, Load, Rdtsc, Store, Xchg

LOCK = 0x200000
COUNTER = 0x200004


def test_xchg_returns_the_old_value_and_stores_the_new() -> None:
    m = machine()
    m.memory.write_u32(LOCK, 0x1234)
    got: list[int] = []

    def kernel():
        got.append((yield Xchg(LOCK, 0x5678)))
        got.append((yield Xchg(LOCK, 0)))
        got.append((yield Load(LOCK)))
        got.append((yield Rdtsc()))
        yield from park()

    boot(m, kernel())
    m.run(until=100)
    assert got == [0x1234, 0x5678, 0, 3]  # each atomic op is one instruction
    assert m.memory.read_u32(LOCK) == 0


def test_atomic_add_returns_the_old_value_and_wraps_at_32_bits() -> None:
    m = machine()
    got: list[int] = []

    def kernel():
        got.append((yield AtomicAdd(COUNTER, 5)))
        got.append((yield AtomicAdd(COUNTER, -6)))  # 5 - 6 wraps
        got.append((yield AtomicAdd(COUNTER, 0)))
        got.append((yield AtomicAdd(COUNTER, 2)))
        yield from park()

    boot(m, kernel())
    m.run(until=100)
    assert got == [0, 5, 0xFFFFFFFF, 0xFFFFFFFF]
    assert m.memory.read_u32(COUNTER) == 1


def _contend(cpus: int, rounds: int, use_lock: bool) -> tuple[int, list[tuple[int, int, int]]]:
    """Every CPU increments COUNTER `rounds` times with a slow read-modify-write; returns count and intervals."""
    m = machine(cpus=cpus)
    intervals: list[tuple[int, int, int]] = []

    def worker(me: int):
        for _ in range(rounds):
            if use_lock:
                while (yield Xchg(LOCK, 1)) != 0:
                    yield Compute(3)  # pause, then spin again
            enter = yield Rdtsc()
            value = yield Load(COUNTER)
            yield Compute(20 + 7 * me)  # the critical section's work
            yield Store(COUNTER, value + 1)
            leave = yield Rdtsc()
            if use_lock:
                yield Store(LOCK, 0)
            intervals.append((enter, leave, me))
            yield Compute(5 + 3 * me)
        yield from park()

    def ap(cpu):
        yield from worker(cpu.id)

    def kernel():
        for i in range(1, cpus):
            yield from start_ap(m, i, ap)
        yield from worker(0)

    boot(m, kernel())
    m.run(until=200_000)
    assert len(intervals) == cpus * rounds
    return m.memory.read_u32(COUNTER), sorted(intervals)


@pytest.mark.parametrize("cpus", [2, 4])
def test_spinlock_from_xchg_gives_mutual_exclusion(cpus: int) -> None:
    rounds = 60
    count, intervals = _contend(cpus, rounds, use_lock=True)
    assert count == cpus * rounds
    for (_, a_leave, _), (b_enter, _, _) in pairwise(intervals):
        assert b_enter > a_leave  # critical sections never overlap in time
    assert {me for _, _, me in intervals} == set(range(cpus))


def test_without_the_lock_updates_are_lost() -> None:
    """The control experiment: the same workload without the lock really races."""
    rounds = 60
    count, intervals = _contend(2, rounds, use_lock=False)
    assert count < 2 * rounds
    assert any(b_enter <= a_leave for (_, a_leave, _), (b_enter, _, _) in pairwise(intervals))


def test_atomic_add_from_many_cpus_loses_nothing() -> None:
    m = machine(cpus=4)
    rounds = 100

    def worker(me: int):
        for _ in range(rounds):
            yield AtomicAdd(COUNTER, 1)
            yield Compute(1 + me)
        yield from park()

    def ap(cpu):
        yield from worker(cpu.id)

    def kernel():
        for i in range(1, 4):
            yield from start_ap(m, i, ap)
        yield from worker(0)

    boot(m, kernel())
    m.run(until=10_000)
    assert m.memory.read_u32(COUNTER) == 4 * rounds
