"""Latency (section 5.1): the measured mean, its breakdown, and the AK-over-UP difference."""

from __future__ import annotations

import pytest

from apkern.experiments.latency import AK_STAGES, measure


@pytest.fixture(scope="module")
def up():
    return measure("up", 1, iterations=200)


@pytest.fixture(scope="module", params=[2, 4, 8])
def ak(request):
    return measure("apkern", request.param, iterations=200)


def test_uniprocessor_gettid_is_about_100_and_its_stages_sum_to_it(up) -> None:
    assert 80 <= up.mean_instructions <= 150
    assert sum(up.breakdown.values()) == pytest.approx(up.mean_instructions, abs=1e-9)
    # the program's own inspection points agree with the trace (it prints two decimals)
    assert up.program_mean == pytest.approx(up.mean_instructions, abs=0.006)


def test_apkern_breakdown_sums_to_the_mean_and_names_every_stage(ak) -> None:
    assert sum(ak.breakdown.values()) == pytest.approx(ak.mean_instructions, abs=1e-9)
    assert ak.program_mean == pytest.approx(ak.mean_instructions, abs=0.006)
    for stage in AK_STAGES.values():
        assert ak.breakdown[stage] > 0, stage


def test_apkern_is_slower_by_what_the_breakdown_explains(up, ak) -> None:
    assert ak.mean_instructions > 2 * up.mean_instructions
    # the bootstrap thread's re-issue is the uniprocessor call itself (minus its inspection share)
    reissue = ak.breakdown["bootstrap thread re-issue"]
    up_call = up.mean_instructions - up.breakdown["trap instruction"] - up.breakdown["interrupts taken on return"]
    assert reissue == pytest.approx(up_call, rel=0.05)
    # so the extra latency is the rest of the path: trap and message, wait, activation, resume
    extra = ak.mean_instructions - up.mean_instructions
    others = sum(v for k, v in ak.breakdown.items() if k != "bootstrap thread re-issue")
    assert extra == pytest.approx(others, abs=up.breakdown["interrupts taken on return"] + 2)


def test_latency_is_deterministic() -> None:
    assert measure("apkern", 3, iterations=50) == measure("apkern", 3, iterations=50)


@pytest.fixture(scope="module", params=[1, 2, 8])
def smp(request):
    return measure("smp", request.param, iterations=200)


def test_smp_gettid_is_the_uniprocessor_path_plus_the_lock(up, smp) -> None:
    """Each uniprocessor stage costs what it costs on one CPU; the lock adds its entry and exit paths."""
    from apkern.smp.costs import Costs

    smp_costs = Costs()  # the default profile's

    assert sum(smp.breakdown.values()) == pytest.approx(smp.mean_instructions, abs=1e-9)
    assert smp.program_mean == pytest.approx(smp.mean_instructions, abs=0.006)
    for stage in ("kernel entry", "dispatch", "call body", "kernel exit"):
        assert smp.breakdown[stage] == up.breakdown[stage], stage
    uncontended_acquire = smp_costs.LOCK_ENTRY + 1  # the path and one compare-exchange
    release = 1 + smp_costs.LOCK_EXIT + 1  # read the CPU number, the exit path, the releasing store
    assert smp.breakdown["lock release"] == release
    assert smp.min_instructions == up.min_instructions + uncontended_acquire + release
    # on one CPU nobody else takes the lock; on eight the idle CPUs' timer ticks sometimes hold it
    if smp.cpus == 1:
        assert smp.breakdown["lock acquire"] == uncontended_acquire
    else:
        assert smp.breakdown["lock acquire"] >= uncontended_acquire
