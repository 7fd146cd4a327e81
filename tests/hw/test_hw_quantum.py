"""On a decoupled machine, CPUs that wait on one event resume at its time, however far the first one runs,
and a CPU woken by one behind it goes on from its own time.

Several CPUs spinning on one word share the word's wake-up (`hw.lockstep`). Decoupled, the
first one woken may run ahead by up to the quantum before the next resumes; the next must
still resume at the wake-up's time, not at the clock the first one reached. Seen failing
without `MachineEnv.step` resetting the clock for each member: the second and third woke
late (at quantum 1,000, by 401 and 802 instructions), and counted that as spinning.
"""

from __future__ import annotations

from typing import Any

import pytest
from hwkit import boot, park, recorder, start_ap

from apkern.hw import IVT, Compute, Gate, Halt, Machine, Rdtsc, SendIPI, SetIVT, SpinWhile, Store
from apkern.hw.traps import IPI_RESCHEDULE

WORD = 0x8000
WRITE_AT = 1000


def _woken(quantum: int) -> list[tuple[int, int, int]]:
    """(cpu, when it woke, when its next 400 instructions ended) for three APs waiting on one word."""
    m = Machine(cpus=4, memory=4 << 20, strict=True, quantum=quantum)
    seen: list[tuple[int, int, int]] = []

    def spinner(cpu: Any) -> Any:
        yield SpinWhile(WORD, 0)
        woke = cpu.env.now
        yield Compute(400)
        seen.append((cpu.id, woke, cpu.env.now))
        yield from park()

    def bsp(cpu: Any) -> Any:
        for ap in (1, 2, 3):
            yield from start_ap(m, ap, spinner)
        yield Compute(WRITE_AT)
        yield Store(WORD, 1)
        yield from park()

    boot(m, bsp(m.bsp))
    m.run(until=5_000)
    return sorted(seen)


@pytest.mark.parametrize("quantum", [100, 1_000])
def test_cpus_woken_together_resume_at_the_wake_up(quantum: int) -> None:
    exact = _woken(0)
    assert len(exact) == 3 and len({woke for _, woke, _ in exact}) == 1
    assert _woken(quantum) == exact


@pytest.mark.parametrize("delay", [0, 5, 20])
def test_a_halted_cpu_woken_by_one_behind_it_goes_on_from_its_own_time(delay: int) -> None:
    """The AP runs 25 instructions ahead of the BSP (it woke the BSP, then computed), halts; the BSP, behind
    it, sends an IPI. The AP's time-stamp counter must not go back. Seen failing without the clamp after a
    halt in `CPU._run`: it read 27, then 3 to 23."""
    m = Machine(cpus=2, memory=4 << 20, strict=True, quantum=30)
    got: list[Any] = []
    seen: list[tuple[int, int]] = []

    def ap(cpu: Any) -> Any:
        yield SetIVT(IVT({IPI_RESCHEDULE: Gate(recorder(got))}))
        yield Store(WORD, 1)
        yield Compute(25)
        before = yield Rdtsc()
        yield Halt()
        seen.append((before, (yield Rdtsc())))
        yield from park()

    def bsp(cpu: Any) -> Any:
        yield from start_ap(m, 1, ap)
        yield SpinWhile(WORD, 0)
        if delay:
            yield Compute(delay)
        yield SendIPI(1, "fixed", IPI_RESCHEDULE)
        yield from park()

    boot(m, bsp(m.bsp))
    m.run(until=3_000)
    assert got, "the IPI was taken"
    ((before, after),) = seen
    assert after > before
