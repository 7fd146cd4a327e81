"""The path attribution of the bootstrap processor's instructions: exact, independent of K where it must be."""

from __future__ import annotations

import pytest

from apkern.experiments.attribution import CALL, PARTS, Attribution
from apkern.experiments.throughput import measure, user_instructions
from apkern.system import System

PROCS = 4
WARMUP, WINDOW = 150_000, 300_000
UP_WARMUP = 500_000  # the uniprocessor starts one process per 100,000-instruction quantum


def point(k: int, n: int, p: float = 90.0):
    return measure(k, p, n, procs=PROCS, warmup=UP_WARMUP if n == 1 else WARMUP, window=WINDOW)


@pytest.fixture(scope="module")
def points():
    return {(k, n): point(k, n) for k in (151, 451) for n in (1, 3)}


def calls(r) -> int:
    """The calls the processor served in the window: forwarded calls handled, or the program's own."""
    return r.busy_passes if r.cpus > 1 else r.loops


def per_call(r) -> dict[str, float]:
    return {part: v / calls(r) for part, v in r.bsp_parts.items()}


def edge(r, ipsc: float) -> float:
    """How far one call cut at each end of the window moves the call part per call."""
    return 2 * ipsc / calls(r)


def test_the_parts_sum_to_the_processors_instructions_exactly(points) -> None:
    for r in points.values():
        assert set(r.bsp_parts) == set(PARTS)
        assert sum(r.bsp_parts.values()) == r.bsp_instructions
        assert r.forwarded_calls or r.cpus == 1


class FanOut:
    def __init__(self, *observers: Attribution) -> None:
        self.observers = observers

    def charge(self, cpu, frame, account, n) -> None:
        for o in self.observers:
            o.charge(cpu, frame, account, n)


def test_a_window_that_cuts_a_pass_still_sums_exactly() -> None:
    # windows ending every few instructions: some end inside a pass whose outcome is not known yet
    k, p, n = 151, 80.0, 2
    ends = [WARMUP + 20_000 + 7 * i for i in range(80)]
    watchers = [Attribution(start=WARMUP, end=e) for e in ends]
    sim = System(kernel="apkern", cpus=n, seed=0)
    sim.machine.profile(FanOut(*watchers))
    u = user_instructions(k, p)
    for _ in range(PROCS):
        sim.spawn("loop", ["loop", str(u), str(k), "0", str(sim.random.randrange(u + k + 1))])
    sim.run(until=WARMUP)
    base = sim.stats["per_cpu"][0]["instructions"]
    totals, held = {}, {}
    for e, w in zip(ends, watchers, strict=True):
        sim.run(until=e)
        totals[e] = sim.stats["per_cpu"][0]["instructions"] - base
        held[e] = w.held
        assert w.total + w.held == totals[e]
    cut = [e for e in ends if held[e]]
    assert cut  # the sweep did end inside passes
    sim.run(until=ends[-1] + 20_000)
    for e, w in zip(ends, watchers, strict=True):
        assert w.held == 0 and w.total == totals[e]  # resolved once the pass showed its outcome
    # the throughput measurement runs on until such a pass resolves, then sums exactly
    r = measure(k, p, n, procs=PROCS, warmup=WARMUP, window=cut[0] - WARMUP)
    assert sum(r.bsp_parts.values()) == r.bsp_instructions


def test_the_call_part_grows_by_exactly_the_calls_length(points) -> None:
    # everything K adds is the re-issued call's; no other path may see it
    for n in (1, 3):
        a, b = points[(151, n)], points[(451, n)]
        ia, ib = per_call(points[(151, 1)])[CALL], per_call(points[(451, 1)])[CALL]
        grew = per_call(b)[CALL] - per_call(a)[CALL]
        assert abs(grew - (451 - 151)) <= edge(a, ia) + edge(b, ib), n


def test_the_loops_own_paths_do_not_depend_on_the_calls_length(points) -> None:
    a, b = per_call(points[(151, 3)]), per_call(points[(451, 3)])
    for part in ("busy_pass", "activation"):
        assert a[part] > 0 and b[part] == pytest.approx(a[part], rel=0.02), part
    assert a["empty_pass"] > 0 and b["empty_pass"] > 0


def test_the_reissued_call_costs_what_the_program_s_own_call_costs_on_the_uniprocessor(points) -> None:
    for k in (151, 451):
        up, ak = points[(k, 1)], points[(k, 3)]
        ipsc = per_call(up)[CALL]
        assert abs(per_call(ak)[CALL] - ipsc) <= edge(ak, ipsc) + edge(up, ipsc), k


def test_the_uniprocessor_runs_only_the_programs(points) -> None:
    for k in (151, 451):
        parts = points[(k, 1)].bsp_parts
        assert parts["user"] > 0 and parts["interrupts"] > 0
        assert parts["busy_pass"] == parts["empty_pass"] == parts["activation"] == parts["spin"] == 0


def test_watching_changes_nothing_the_system_does() -> None:
    def run(watch: bool) -> dict:
        sim = System(kernel="apkern", cpus=3, seed=1)
        if watch:
            sim.machine.profile(Attribution(start=50_000, end=150_000))
        u = user_instructions(151, 90.0)
        for _ in range(PROCS):
            sim.spawn("loop", ["loop", str(u), "151", "0", str(sim.random.randrange(u + 152))])
        sim.run(until=200_000)
        return sim.stats

    assert run(True) == run(False)
