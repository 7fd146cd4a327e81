"""Latency and throughput of the master-slave port: the handoff's cost, and the master's capacity as the bound.

The port's capacity bound, derived like the paper's formula: the master runs every call's
kernel path, the call's own instructions (ipsc, the uniprocessor's) plus the port's work per
call there (opsc: taking the thread from the master queue, switching to it, queueing it for
user mode), so the speedup never exceeds t_up / (ipsc + opsc). Here opsc is what the master's
profiler attributes to the port's code, measured apart from the speedup; a point with a large
kernel share saturates the master and reaches the bound.
"""

from __future__ import annotations

import pytest

from apkern.experiments import latency, throughput
from apkern.experiments.attribution import CALL, MASTER_PARTS
from apkern.experiments.reproduce import QUICK


def _point(k: int, p: float, n: int, kernel: str = "master-slave") -> throughput.ThroughputPoint:
    return throughput.measure(k, p, n, warmup=QUICK.warmup(k, p, n), window=QUICK.window(k, p, n), kernel=kernel)


@pytest.fixture(scope="module")
def k151_p80() -> dict[int, throughput.ThroughputPoint]:
    up = _point(151, 80.0, 1)
    return {1: up, **{n: throughput.with_speedup(_point(151, 80.0, n), up) for n in (2, 8)}}


def test_the_master_caps_the_speedup_at_its_capacity(k151_p80) -> None:
    up, eight = k151_p80[1], k151_p80[8]
    t_up, ipsc = up.window_instructions / up.loops, up.bsp_parts[CALL] / up.loops
    parts = {q: v / eight.loops for q, v in eight.master_parts.items()}
    assert parts[CALL] == pytest.approx(ipsc, rel=0.02)  # the master runs the uniprocessor's path
    opsc = parts["port"] + parts["interrupts"] + parts["spin"] + parts["other"]
    assert 50 < opsc < 400  # the port's work per call: a switch and two queue operations, not a forwarding
    capacity = t_up / (ipsc + opsc)
    assert 1.5 < capacity < 8
    assert eight.master_load > 0.99 and parts["user"] < 1 and parts["idle"] < 1  # saturated: no spare time
    assert eight.speedup == pytest.approx(capacity, rel=0.03)
    assert k151_p80[2].speedup < capacity and k151_p80[2].master_load < eight.master_load


def test_the_masters_parts_sum_to_its_instructions(k151_p80) -> None:
    for n in (2, 8):
        pt = k151_p80[n]
        assert set(pt.master_parts) == set(MASTER_PARTS)
        # the counters take an operation whole at its end, the profiler the part of it inside the window
        assert sum(pt.master_parts.values()) == pytest.approx(pt.bsp_instructions, rel=0.002)
        busy = pt.window_instructions * pt.master_load
        assert sum(v for q, v in pt.master_parts.items() if q not in ("user", "idle")) == pytest.approx(busy, rel=0.002)


def test_with_little_kernel_work_every_cpu_runs_user_code() -> None:
    up = _point(451, 95.0, 1)
    ms = throughput.with_speedup(_point(451, 95.0, 4), up)
    assert ms.speedup > 3.5  # the slaves, and the master in its spare time
    assert ms.master_load < 0.5 and ms.master_parts["user"] > 0
    assert ms.forwarded_calls == 0 and ms.lock_spin_share is None and ms.bsp_load is None


@pytest.mark.parametrize("cpus", [2, 8])
def test_gettid_latency_is_the_handoff_both_ways(cpus: int) -> None:
    r = latency.measure(kernel="master-slave", cpus=cpus, iterations=50)
    assert sum(r.breakdown.values()) == pytest.approx(r.mean_instructions)
    b = r.breakdown
    for stage in ("slave trap stub and queueing", "wait for the master", "master switches to it", "call body"):
        assert b[stage] > 0, stage
    for stage in ("queue for user mode", "wait for a slave", "slave switches to it", "return to user mode"):
        assert b[stage] > 0, stage
    assert b["call body"] == 10 and b["kernel entry"] == 34  # the uniprocessor's own path, on the master
    up = latency.measure(kernel="up", cpus=1, iterations=50)
    assert up.mean_instructions + 200 < r.mean_instructions < 1_000
