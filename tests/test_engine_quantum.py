"""Temporal decoupling (`System(quantum=Q)`): each CPU's clock runs ahead of the others by less than Q
and never goes back; runs stay deterministic; an interrupt never reaches a wait that has ended.

The guards these tests hold (each seen failing when removed): a CPU woken or interrupted by a CPU
behind it goes on from its own time (the clamps in `CPU._run` after a spin's wait and an interrupted
compute; without them its activity slices overlap; the one after a halt is tests/hw/test_hw_quantum.py's);
an interrupt raised by a CPU ahead of the target is delivered only if the target still waits
(`CPU._kick`): without it the master-slave runs below die of a stray `simpy.Interrupt`.
"""

from __future__ import annotations

from itertools import pairwise

import pytest

from apkern import ConfigError, System
from apkern.system import MAX_QUANTUM

KERNELS = ("apkern", "smp", "master-slave")


def _busy(kernel: str, quantum: int, trace: bool = False) -> System:
    sim = System(kernel=kernel, cpus=4, seed=0, quantum=quantum, trace=trace)
    for _ in range(6):
        sim.spawn("loop", ["loop", "2000", "151", "0", str(sim.random.randrange(2000))])
    sim.spawn("pipeline", ["pipeline", "40"])
    sim.spawn("threads", ["threads", "3"])
    return sim


@pytest.mark.parametrize("quantum", [0, 10, MAX_QUANTUM])
@pytest.mark.parametrize("kernel", KERNELS)
def test_each_cpu_runs_ahead_by_less_than_the_quantum_and_never_back(kernel: str, quantum: int) -> None:
    sim = _busy(kernel, quantum, trace=True)
    ahead = 0
    for until in range(37_000, 600_001, 37_000):  # 16 looks, at instants no path is aligned to
        sim.run(until=until)
        for c in sim.machine.stats()["cpus"]:
            ahead = max(ahead, c["instructions"] + c["halted"] - until)
    assert ahead < quantum or ahead == quantum == 0
    if quantum:
        assert ahead > quantum // 2, "the CPUs hardly ran ahead: nothing was decoupled"
    for cid, rows in sim.machine.tracer.slices.items():
        overlaps = [(a, b) for a, b in pairwise(rows) if b[0] < a[1]]
        assert not overlaps, f"cpu{cid}'s clock went back: {overlaps[:3]}"


@pytest.mark.parametrize("kernel", KERNELS)
def test_a_decoupled_run_is_deterministic(kernel: str) -> None:
    runs = []
    for _ in range(2):
        sim = _busy(kernel, MAX_QUANTUM)
        sim.run(until=400_000)
        runs.append((sim.stats, sim.console()))
    assert runs[0] == runs[1]


def test_decoupling_changes_the_timing() -> None:
    """The setting is not a no-op: the same run differs from the exact one (and quantum 0 is the exact one)."""
    exact, zero, decoupled = (_busy("apkern", q) for q in (0, 0, MAX_QUANTUM))
    for sim in (exact, zero, decoupled):
        sim.run(until=400_000)
    assert exact.stats == zero.stats
    assert exact.stats != decoupled.stats


@pytest.mark.parametrize(
    ("program", "argv", "cpus"),
    [("threads", ["threads", "9"], 4), ("threads", ["threads", "9"], 8), ("signals", ["signals"], 2)],
)
def test_an_interrupt_from_a_cpu_ahead_reaches_only_a_wait_in_progress(
    program: str, argv: list[str], cpus: int
) -> None:
    """Master-slave decoupled by 5,000 instructions (past `MAX_QUANTUM`, set on the machine itself, to reach
    the case often): slaves interrupt the master from well ahead of it, after its wait has ended."""
    up = System(kernel="up")
    ref = up.spawn(program, argv)
    up.run(limit=50_000_000)
    sim = System(kernel="master-slave", cpus=cpus, strict=True)
    sim.machine.quantum = 5_000  # read by each CPU's loop when it first runs
    proc = sim.spawn(program, argv)
    sim.run(limit=50_000_000)
    assert (proc.exit_status, sim.console()) == (ref.exit_status, up.console())


@pytest.mark.parametrize("bad", [-1, MAX_QUANTUM + 1, True, 1.5, "30"])
def test_a_bad_quantum_is_refused(bad: object) -> None:
    with pytest.raises(ConfigError, match="quantum"):
        System(kernel="apkern", cpus=2, quantum=bad)  # type: ignore[arg-type]


def test_decoupling_needs_the_fast_engine() -> None:
    with pytest.raises(ConfigError, match="fast engine"):
        System(kernel="apkern", cpus=2, engine="reference", quantum=MAX_QUANTUM)
