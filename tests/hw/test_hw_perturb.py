"""Interleaving exploration: a seeded perturbation of kernel costs, IPI delivery and timer intervals.

Each effect stays within its stated bound, user work keeps its length, the same
seed gives the same run, and a perturbation whose bounds are all zero is the
plain machine, bit for bit (so the hooks themselves change nothing).
"""

from __future__ import annotations

import pytest
from hwkit import boot, idle_ctx, machine, park, recorder, start_ap, user_ctx

from apkern import System
from apkern.hw import IVT, Compute, Gate, Machine, Perturbation, Rdtsc, SendIPI, SetIVT, SetTimer, Switch
from apkern.hw.perturb import CostPerturbation
from apkern.hw.traps import IPI_RESCHEDULE, TIMER
from apkern.system import ConfigError

NEUTRAL = {"cost_scale": 1.0, "stall": 0.0, "ipi_delay": 0, "timer_jitter": 0.0}


def perturbed(cpus: int, p: Perturbation) -> Machine:
    return Machine(cpus=cpus, memory=4 << 20, strict=True, perturb=p)


def _timed(n: int, times: int, out: list[int]) -> object:
    """Code that times `times` Compute(n) with the time-stamp counter (Rdtsc costs 1)."""
    for _ in range(times):
        a = yield Rdtsc()
        yield Compute(n)
        b = yield Rdtsc()
        out.append(b - a - 1)


def test_off_by_default() -> None:
    assert machine().perturb is None
    sim = System(kernel="apkern", cpus=2)
    assert sim.machine.perturb is None and "perturb" not in sim.stats


def test_system_takes_a_seed_or_a_perturbation() -> None:
    assert System(perturb=7).machine.perturb.seed == 7
    p = Perturbation(3, stall=0.5)
    assert System(perturb=p).machine.perturb is p
    for bad in (True, "1", 1.5):
        with pytest.raises(ConfigError):
            System(perturb=bad)
    for kw in ({"cost_scale": 0.5}, {"stall": 2}, {"ipi_delay": -1}, {"timer_jitter": 1.0}):
        with pytest.raises(ValueError):
            Perturbation(0, **kw)


def test_kernel_costs_vary_within_the_bound_and_user_work_does_not() -> None:
    p = Perturbation(11, cost_scale=2.0, stall=0.0, ipi_delay=0, timer_jitter=0.0)
    m = perturbed(1, p)
    kern: list[int] = []
    user: list[int] = []

    def kernel():
        yield from _timed(100, 200, kern)
        yield Switch(user_ctx(_timed(100, 50, user)))

    boot(m, kernel())
    m.run(until=200_000)
    assert len(kern) == 200 and len(user) == 50
    assert all(50 <= c <= 200 for c in kern), (min(kern), max(kern))
    assert min(kern) < 80 and max(kern) > 150  # the whole range is used, both ways
    assert user == [100] * 50
    assert p.computes == 200


def test_stalls_are_bounded_and_each_cpu_has_its_own_rate() -> None:
    p = Perturbation(5, cost_scale=1.0, stall=0.3, stall_max=3000, ipi_delay=0, timer_jitter=0.0)
    rates = [CostPerturbation(p, cid).stall for cid in range(8)]  # what each CPU draws for the run
    assert all(0 <= r <= 0.3 for r in rates) and max(rates) - min(rates) > 0.1
    m = perturbed(1, p)
    kern: list[int] = []

    def kernel():
        yield from _timed(10, 1000, kern)
        yield from park()

    boot(m, kernel())
    m.run(until=3_000_000)
    stalled = [c - 10 for c in kern if c != 10]
    assert len(kern) == 1000
    expect, sd = 1000 * rates[0], (1000 * rates[0] * (1 - rates[0])) ** 0.5
    assert abs(len(stalled) - expect) < 5 * sd + 1, (len(stalled), expect)
    assert all(1 <= s <= 3000 for s in stalled) and max(stalled) > 1500
    assert p.stalls == len(stalled) and p.stall_instructions == sum(stalled)


def test_fixed_ipis_arrive_late_within_the_bound() -> None:
    p = Perturbation(2, cost_scale=1.0, stall=0.0, ipi_delay=700, timer_jitter=0.0)
    m = perturbed(2, p)
    got: list[tuple[int, int, object]] = []
    sent: list[int] = []

    def ap(cpu):
        yield SetIVT(IVT({IPI_RESCHEDULE: Gate(recorder(got))}))
        yield Switch(idle_ctx("idle1"))

    def kernel():
        yield from start_ap(m, 1, ap)  # INIT and SIPI: never delayed, or the AP would not start
        yield Compute(1000)
        for _ in range(100):
            sent.append((yield Rdtsc()) + 1)
            yield SendIPI(1, "fixed", IPI_RESCHEDULE)
            yield Compute(1000)  # longer than the bound: the IPIs arrive in order
        yield from park()

    boot(m, kernel())
    m.run(until=300_000)
    delays = [t - s for (_, t, _), s in zip(got, sent, strict=True)]
    assert all(0 <= d <= 700 for d in delays)
    assert len(set(delays)) > 50 and max(delays) > 600
    assert p.ipis_delayed == sum(1 for d in delays if d)


def test_timer_intervals_are_jittered_within_the_bound() -> None:
    p = Perturbation(9, cost_scale=1.0, stall=0.0, ipi_delay=0, timer_jitter=0.25)
    m = perturbed(1, p)
    ticks: list[tuple[int, int, object]] = []
    start: list[int] = []

    def kernel():
        yield SetIVT(IVT({TIMER: Gate(recorder(ticks))}))
        start.append((yield Rdtsc()) + 1)
        yield SetTimer(1000)
        yield Switch(idle_ctx())

    boot(m, kernel())
    m.run(until=200_000)
    times = [start[0]] + [t for _, t, _ in ticks]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert len(gaps) > 150
    assert all(750 <= g <= 1250 for g in gaps), (min(gaps), max(gaps))  # the first tick too
    assert min(gaps) < 800 and max(gaps) > 1200


def _run(kernel: str, cpus: int, perturb: object, programs: list[tuple[str, list[str]]]) -> tuple:
    sim = System(kernel=kernel, cpus=cpus, strict=True, trace=True, perturb=perturb)
    procs = [sim.spawn(prog, argv) for prog, argv in programs]
    sim.run()
    stats = dict(sim.stats)
    perturbation = stats.pop("perturb", None)
    marks = [(k.time, k.cpu, k.name) for k in sim.machine.tracer.marks]
    consoles = [sim.console(p.pid) for p in procs]
    return (stats, consoles, [p.exit_status for p in procs], marks), perturbation


MIX = [("threads", ["threads", "3"]), ("signals", ["signals"]), ("pipeline", ["pipeline", "40"])]


def test_neutral_bounds_are_the_plain_machine_bit_for_bit() -> None:
    """With every bound at zero the perturbation hooks run on every path and change nothing."""
    plain, none = _run("apkern", 4, None, MIX)
    neutral, counters = _run("apkern", 4, Perturbation(1, **NEUTRAL), MIX)
    assert none is None and counters["computes"] > 1000
    assert neutral == plain


@pytest.mark.parametrize("cpus", [2, 5])
def test_same_seed_same_run_other_seed_other_run(cpus: int) -> None:
    a, ca = _run("apkern", cpus, 4, MIX)
    b, cb = _run("apkern", cpus, 4, MIX)
    c, _ = _run("apkern", cpus, 5, MIX)
    plain, _ = _run("apkern", cpus, None, MIX)
    assert a == b and ca == cb
    assert ca["stalls"] > 0 and ca["ipis_delayed"] > 0 and ca["ticks_jittered"] > 0
    assert a[0]["time"] != c[0]["time"] != plain[0]["time"]
    assert a[1:3] == c[1:3] == plain[1:3]  # timing differs, what the programs do does not
