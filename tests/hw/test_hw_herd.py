"""Spinlock herds (hw.herd): CPUs waiting together for a lock word do exactly what each would alone.

Every case runs on both engines: the reference engine runs each waiter's loop op by op, the
fast one runs the waiters of a lock word as a herd. Everything must agree: who takes the
lock when, every CPU's instructions by account, operations and TLB hits, the failures counted.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from hwkit import boot, park, start_ap

from apkern.hw import CmpXchg, Compute, Machine, MachineError, SpinAcquire, Store
from apkern.hw.herd import Herd

LOCK = 0x8000  # physical: paging is off in these kernels
MEMORY = 4 << 20


class Lock:
    """What `SpinAcquire` needs of a lock: a name and a count of failures."""

    def __init__(self) -> None:
        self.name = "the test lock"
        self.spins = 0
        self.contended = 0


def acquire(lock: Lock, cid: int) -> Any:
    holder = yield CmpXchg(LOCK, 0, cid + 1)
    if holder:
        lock.contended += 1
        lock.spins += 1
        yield SpinAcquire(LOCK, holder, cid + 1, lock)


def run(engine: str, cpus: int, rounds: int, seed: int, same_value: bool, release_at_once: bool) -> dict[str, Any]:
    m = Machine(cpus=cpus, memory=MEMORY, strict=True, engine=engine)
    lock = Lock()
    taken: list[tuple[int, int]] = []
    rng = random.Random(seed)
    plans = {c: [(rng.randrange(0, 40), rng.randrange(0, 60)) for _ in range(rounds)] for c in range(cpus)}

    def worker(cpu: Any) -> Any:
        cid = cpu.id
        for inside, outside in plans[cid]:
            yield from acquire(lock, cid)
            taken.append((cid, cpu.env.now))
            if not (release_at_once and inside % 2 == 0):
                yield Compute(inside)
            if same_value and inside % 3 == 0:
                yield Store(LOCK, cid + 1)  # a write that leaves the word as it was: the waiters look again
                yield Compute(inside)
            yield Store(LOCK, 0)
            if outside % 4:  # else it comes straight back for the lock, before the waiters
                yield Compute(outside)
        yield from park()

    def bsp(cpu: Any) -> Any:
        for ap in range(1, cpus):
            yield from start_ap(m, ap, worker)
        yield from worker(cpu)

    boot(m, bsp(m.bsp))
    m.run(until=200_000)
    return {
        "taken": taken,
        "spins": lock.spins,
        "contended": lock.contended,
        "cpus": m.stats()["cpus"],
        "ops": [c.ops for c in m.cpus],
    }


@pytest.mark.parametrize(
    ("cpus", "seed", "same_value", "release_at_once"),
    [(6, 1, False, False), (8, 2, True, False), (8, 3, False, True), (12, 4, True, True), (3, 5, True, True)],
)
def test_a_herd_takes_the_lock_as_its_members_would_one_by_one(
    cpus: int, seed: int, same_value: bool, release_at_once: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    joins = []
    join = Herd.join
    monkeypatch.setattr(Herd, "join", lambda self, *a: (joins.append(len(self.members)), join(self, *a)))
    fast = run("fast", cpus, 30, seed, same_value, release_at_once)
    assert joins and max(joins) >= 1  # herds formed, and grew past one member
    assert fast["spins"] > fast["contended"] > 0
    joins.clear()
    assert run("reference", cpus, 30, seed, same_value, release_at_once) == fast
    assert not joins  # the reference engine never forms one


def test_counters_of_waiters_are_up_to_date_whenever_the_machine_stops() -> None:
    """A run cut into slices reads the same counters at each cut on both engines (members mid-wait included)."""
    out = {}
    for engine in ("fast", "reference"):
        m = Machine(cpus=5, memory=MEMORY, strict=True, engine=engine)
        lock = Lock()

        def worker(cpu: Any, m: Machine = m, lock: Lock = lock) -> Any:
            while True:
                yield from acquire(lock, cpu.id)
                yield Compute(500)
                yield Store(LOCK, 0)
                yield Compute(7)

        def bsp(cpu: Any, m: Machine = m, worker: Any = worker) -> Any:
            for ap in range(1, 5):
                yield from start_ap(m, ap, worker)
            yield from worker(cpu)

        boot(m, bsp(m.bsp))
        cuts = []
        for until in range(1_000, 30_000, 997):
            m.run(until=until)
            cuts.append((m.stats()["cpus"], [c.ops for c in m.cpus], lock.spins))
        out[engine] = cuts
    assert out["fast"] == out["reference"]


def test_spinning_with_interrupts_enabled_is_refused() -> None:
    m = Machine(cpus=1, memory=MEMORY, strict=True)

    def k(cpu: Any) -> Any:
        from apkern.hw import EnableInterrupts

        yield Store(LOCK, 5)
        yield EnableInterrupts()
        yield SpinAcquire(LOCK, 5, 1, Lock())

    boot(m, k(m.bsp))
    with pytest.raises(MachineError, match="interrupts enabled"):
        m.run(until=100)
