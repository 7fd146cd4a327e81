"""predict: the capacity model's inputs taken from a trace, its bound per kernel, and the replays beside it."""

from __future__ import annotations

import math

import pytest

from apkern.experiments import replay as rx
from apkern.workloads import replay as rp
from apkern.workloads import strace


def inputs(**kw: float) -> rx.ModelInputs:
    base = {"ips": 1e8, "calls": 10, "ipsc": 1000.0, "interval": 15_000.0, "calls_per_second": 0.0}
    base.update({"parallelism": 8.0, "opsc": 2000.0, "opsc_source": "given", **kw})
    return rx.ModelInputs(**base)  # type: ignore[arg-type]


def test_the_bounds_of_each_kernel() -> None:
    m = inputs()  # the paper's worked example: 1000-instruction calls every 15,000, opsc 2000: at most 5
    got = [rx.model_speedup("apkern", n, m) for n in (1, 2, 4, 6, 8)]
    assert got == [None, pytest.approx(15 / 14), pytest.approx(45 / 14), 5, 5]  # the APs do the user work only
    assert [rx.model_speedup("smp", n, m) for n in (1, 8)] == [1, 8]  # the lock allows 15
    assert rx.model_speedup("smp", 8, inputs(ipsc=5000.0)) == 3  # the inverse of the kernel share
    assert [rx.model_speedup("up", n, m) for n in (1, 2)] == [1.0, None]
    assert rx.model_speedup("apkern", 8, inputs(parallelism=1.5)) == 1.5
    assert rx.model_speedup("master-slave", 4, m) is None  # a kernel the model has no formula for


def test_the_inputs_come_from_the_trace() -> None:
    text = "".join(
        f"{pid} {t:.6f} getpid() = {pid} <0.000010>\n"
        for t, pid in [(1.0, 1), (1.0001, 1), (1.0002, 1), (1.0001, 2), (1.0002, 2)]
    )
    text = "1 0.999900 clone(child_stack=NULL, flags=SIGCHLD) = 2 <0.000001>\n" + text
    p = rp.plan(strace.parse(text))
    m = rx.model_inputs(p, opsc=300)
    # the parent's gaps: 99, 90, 90 us; the child's: 199 us from the end of the clone, then 90
    assert p.user_instructions == 9_900 + 9_000 + 9_000 + 19_900 + 9_000
    assert p.kernel_instructions == 5 * 1_000  # the clone is our kernel's own work: no charge
    assert m.calls == 6 and m.ipsc == pytest.approx(5_000 / 6)
    assert m.interval == pytest.approx(61_800 / 6) and m.calls_per_second == pytest.approx(1e8 / m.interval)
    assert m.parallelism == pytest.approx(2.0)  # two timelines of 30,900 instructions each
    assert (m.opsc, m.opsc_source) == (300, "given")


def test_replayed_speedups_stay_within_the_model_bound() -> None:
    plan = rp.shipped_plan("findgrep")
    pred = rx.predict("findgrep", plan, kernels=("up", "apkern", "smp"), cpus=(1, 2, 3), opsc=400)
    by = {(p.kernel, p.cpus): p for p in pred.points}
    assert by[("up", 1)].replayed == 1.0 and by[("up", 2)].replayed is None
    assert by[("apkern", 1)].replayed is None and by[("apkern", 1)].model is None  # no AP on one CPU
    assert by[("apkern", 3)].replayed > 1.1  # find and grep overlap through their pipe
    for p in pred.points:
        if p.replayed is not None and p.model is not None:
            assert p.replayed <= p.model * 1.05, p
            assert p.exit_status == 0 and math.isfinite(p.replayed)
    text = rx.format_prediction(plan, pred)
    assert "opsc 400 instructions per forwarded call (given)" in text
    assert [ln.split()[0] for ln in text.splitlines()[-3:]] == ["up", "apkern", "smp"]
