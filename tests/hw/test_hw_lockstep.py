"""CPUs in lockstep (hw.lockstep): one event for several CPUs changes nothing of the order of events."""

from __future__ import annotations

from typing import Any

import pytest
from hwkit import boot, park, start_ap

from apkern.hw import IVT, Compute, EnableInterrupts, Gate, Load, Machine, SendIPI, SetIVT, SpinWhile, Store
from apkern.hw.lockstep import MachineEnv, Tick, Wake

WORD, X = 0x8000, 0x8004  # physical: paging is off in these kernels
VECTOR = 0x40


def run(engine: str) -> tuple[list[Any], dict[str, Any]]:
    """CPUs 1 and 2 spin on WORD; the write wakes both at one instant and they go on in lockstep. One
    instruction later CPU 1 interrupts CPU 3 (computing with interrupts enabled), whose handler writes X
    at once; CPU 2 loads X at that same instant, after the interrupt: it must see the handler's write."""
    m = Machine(cpus=4, memory=4 << 20, strict=True, engine=engine)
    seen: list[Any] = []

    def handler(cpu: Any, info: Any) -> Any:
        yield Store(X, 7)

    def computing(cpu: Any) -> Any:
        yield SetIVT(IVT({VECTOR: Gate(handler)}))
        yield EnableInterrupts()  # computing as an idle loop or user code would: interruptible
        while True:
            yield Compute(100_000)

    def sender(cpu: Any) -> Any:
        yield SpinWhile(WORD, 0)
        yield SendIPI(3, "fixed", VECTOR)
        yield from park()

    def loader(cpu: Any) -> Any:
        yield SpinWhile(WORD, 0)
        seen.append(((yield Load(X)), cpu.env.now))
        yield from park()

    def bsp(cpu: Any) -> Any:
        yield from start_ap(m, 1, sender)
        yield from start_ap(m, 2, loader)
        yield from start_ap(m, 3, computing)
        yield Compute(1000)
        yield Store(WORD, 1)
        yield from park()

    boot(m, bsp(m.bsp))
    m.run(until=2000)
    return seen, m.stats()


def test_an_urgent_event_goes_before_the_members_still_to_come(monkeypatch: pytest.MonkeyPatch) -> None:
    batched = []
    step = MachineEnv.step

    def counting_step(env: Any) -> None:
        head = env._queue[0][3] if env._queue else None
        if head.__class__ in (Tick, Wake) and len(head.callbacks) > 1:
            batched.append(head.__class__)
        step(env)

    monkeypatch.setattr(MachineEnv, "step", counting_step)
    fast = run("fast")
    assert Tick in batched and Wake in batched  # both kinds of shared event were used
    assert fast == run("reference")
    assert fast[0] == [(7, fast[0][0][1])]  # the load came after the handler's store
