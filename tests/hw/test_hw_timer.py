"""The local APIC timer: per CPU, periodic, splits user computation, can be stopped and reprogrammed."""

from __future__ import annotations

import pytest
from hwkit import boot, idle_ctx, machine, park, recorder, start_ap, user_ctx

from apkern.hw import IVT, Compute, Gate, Halt, Rdtsc, SetIVT, SetTimer, Switch
from apkern.hw.traps import TIMER


def test_timer_interrupts_arrive_at_the_period_on_its_own_cpu_only() -> None:
    m = machine(cpus=3)
    ticks: list[tuple[int, int, object]] = []
    ivt = IVT({TIMER: Gate(recorder(ticks, cost=5))})
    programmed: dict[int, int] = {}

    def ap(cpu):
        yield SetIVT(ivt)
        if cpu.id == 1:
            programmed[1] = (yield Rdtsc()) + 1
            yield SetTimer(700)
        yield Switch(idle_ctx(f"idle{cpu.id}"))

    def kernel():
        yield SetIVT(ivt)
        yield from start_ap(m, 1, ap)
        yield from start_ap(m, 2, ap)  # CPU 2 never programs its timer
        programmed[0] = (yield Rdtsc()) + 1
        yield SetTimer(1000)
        yield Switch(idle_ctx("idle0"))

    boot(m, kernel())
    m.run(until=10_000)
    by_cpu = {c: [t for cc, t, _ in ticks if cc == c] for c in (0, 1, 2)}
    p0, p1 = programmed[0], programmed[1]
    assert by_cpu[0] == [p0 + 1000 * k for k in range(1, 11) if p0 + 1000 * k < 10_000]
    assert by_cpu[1] == [p1 + 700 * k for k in range(1, 15) if p1 + 700 * k < 10_000]
    assert by_cpu[2] == []
    stats = m.stats()["cpus"]
    assert [c["timer_interrupts"] for c in stats] == [len(by_cpu[0]), len(by_cpu[1]), 0]
    assert [c["interrupts"] for c in stats] == [len(by_cpu[0]), len(by_cpu[1]), 0]


def test_timer_splits_a_user_compute_and_the_remainder_continues() -> None:
    m = machine()
    ticks: list[tuple[int, int, object]] = []
    span: list[int] = []

    def user():
        start = yield Rdtsc()
        yield Compute(10_000)
        end = yield Rdtsc()
        span.extend([start, end])

    def kernel():
        yield SetIVT(IVT({TIMER: Gate(recorder(ticks, cost=100))}))
        yield SetTimer(1000)
        yield Switch(user_ctx(user()))

    boot(m, kernel())
    m.run(until=20_000)
    start, end = span
    during = [t for _, t, _ in ticks if start < t < end]
    assert len(during) >= 10  # the compute really was interrupted, many times
    # Each interrupt arrives on time, in the middle of the compute: not deferred to its end.
    assert during == [1000 * k + 1 for k in range(1, len(during) + 1)]
    # The user work is preserved exactly; the handlers' instructions are added on top.
    assert end - start == 1 + 10_000 + 100 * len(during)
    cpu = m.stats()["cpus"][0]
    assert cpu["user_instructions"] == 10_000 + 2
    assert cpu["kernel_instructions"] == 2 + 100 * len(ticks)


def test_set_timer_zero_stops_the_timer() -> None:
    m = machine()
    ticks: list[tuple[int, int, object]] = []

    def on_tick(cpu, info):
        ticks.append(cpu.env.now)
        if len(ticks) == 3:
            yield SetTimer(0)
        yield Compute(1)

    def kernel():
        yield SetIVT(IVT({TIMER: Gate(on_tick)}))
        yield SetTimer(500)
        yield from park()

    boot(m, kernel())
    m.run(until=20_000)
    assert ticks == [501, 1001, 1501]
    assert m.cpus[0].timer.fired == 3
    assert m.cpus[0].timer.period == 0


def test_reprogramming_replaces_the_old_period() -> None:
    m = machine()
    ticks: list[tuple[int, int, object]] = []

    def kernel():
        yield SetIVT(IVT({TIMER: Gate(recorder(ticks))}))
        yield SetTimer(1000)  # at t=1: would tick at 1001, 2001, ...
        yield Compute(98)
        yield SetTimer(300)  # at t=100: ticks at 400, 700, 1000, 1300, ...
        yield from park()

    boot(m, kernel())
    m.run(until=2000)
    assert [t for _, t, _ in ticks] == [400, 700, 1000, 1300, 1600, 1900]


def test_timer_waits_for_an_interruptible_boundary_and_coalesces() -> None:
    m = machine()
    ticks: list[tuple[int, int, object]] = []

    def kernel():
        yield SetIVT(IVT({TIMER: Gate(recorder(ticks))}))
        yield SetTimer(1000)
        yield Compute(5000)  # kernel code: interrupts stay pending until it halts
        yield Halt()
        yield Compute(10)
        yield from park()

    boot(m, kernel())
    m.run(until=5500)
    # Five ticks fired during the kernel compute; the APIC holds one request per vector.
    assert m.cpus[0].timer.fired == 5
    assert [t for _, t, _ in ticks] == [5002]


def test_negative_period_is_rejected() -> None:
    m = machine()
    with pytest.raises(ValueError):
        m.cpus[0].timer.program(-1)


def test_interrupts_wait_while_kernel_code_has_them_disabled() -> None:
    """cli/sti: an idle loop holding a lock takes its timer interrupt only once it has let go."""
    from apkern.hw import Context, DisableInterrupts, EnableInterrupts, Frame

    m = machine()
    ticks: list[tuple[int, int, object]] = []
    marks: list[int] = []

    def loop():
        yield Compute(500)  # interruptible: the first tick lands here
        yield DisableInterrupts()
        marks.append((yield Rdtsc()))
        for _ in range(30):
            yield Compute(100)  # 3000 instructions with interrupts off: ticks at 2000 and 3000 wait
        marks.append((yield Rdtsc()))
        yield EnableInterrupts()
        yield from park()

    def kernel():
        yield SetIVT(IVT({TIMER: Gate(recorder(ticks, cost=5))}))
        yield SetTimer(1000)
        yield Switch(Context([Frame(loop(), user=False, intr=True)], "idle-like"))

    boot(m, kernel())
    m.run(until=6000)
    times = [t for _, t, _ in ticks]
    off, on = marks
    assert not [t for t in times if off < t <= on + 1], (times, marks)  # none taken while off
    assert len([t for t in times if t > on]) >= 2  # the pending one right after sti, then the period


def test_user_code_may_not_disable_interrupts() -> None:
    from apkern.hw import DisableInterrupts
    from apkern.hw.traps import GP

    m = machine()
    faults: list = []

    def user():
        yield DisableInterrupts()

    def on_gp(cpu, flt):
        faults.append(flt.vector)
        yield from park()

    def kernel():
        yield SetIVT(IVT({GP: Gate(on_gp)}))
        yield Switch(user_ctx(user()))

    boot(m, kernel())
    m.run(until=1000)
    assert faults == [GP]
