"""On a decoupled machine, CPUs that wait on one event resume at its time, however far the first one runs.

Several CPUs spinning on one word share the word's wake-up (`hw.lockstep`). Decoupled, the
first one woken may run ahead by up to the quantum before the next resumes; the next must
still resume at the wake-up's time, not at the clock the first one reached. Seen failing
without `MachineEnv.step` resetting the clock for each member: the second and third woke
late (at quantum 1,000, by 401 and 802 instructions), and counted that as spinning.
"""

from __future__ import annotations

from typing import Any

import pytest
from hwkit import boot, park, start_ap

from apkern.hw import Compute, Machine, SpinWhile, Store

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
